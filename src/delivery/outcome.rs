//! What an attempt's result means: acknowledged, worth retrying, or permanent.

use std::time::Duration;

use crate::http::{HttpError, Response};

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: delivered.
    Delivered,
    /// 408, 429, 5xx, timeouts, connection and protocol failures.
    Retry {
        /// For logs and the dead-letter file.
        error: String,
        /// The status, when there was an answer.
        status: Option<u16>,
        /// The receiver's `Retry-After`.
        after: Option<Duration>,
    },
    /// Other 4xx, 3xx (redirects are not followed) and anything else.
    Permanent {
        /// For logs and the dead-letter file.
        error: String,
        /// The status.
        status: u16,
    },
}

/// Classifies the result of one attempt.
pub fn classify(result: &Result<Response, HttpError>) -> Outcome {
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                error: e.to_string(),
                status: None,
                after: None,
            }
        }
    };
    let status = r.status;
    if (200..=299).contains(&status) {
        // The common case formats nothing: one answer per webhook.
        return Outcome::Delivered;
    }
    let body = String::from_utf8_lossy(&r.body);
    let body = body.trim();
    let error = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )
    };
    match status {
        408 | 429 | 500..=599 => Outcome::Retry {
            error,
            status: Some(status),
            after: r.retry_after,
        },
        300..=399 => Outcome::Permanent {
            error: format!(
                "HTTP {status} redirect to {} (not followed; point callback_url at the final address)",
                r.location.as_deref().unwrap_or("nowhere")
            ),
            status,
        },
        _ => Outcome::Permanent { error, status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<Response, HttpError> {
        Ok(Response {
            status,
            retry_after: Some(Duration::from_secs(3)),
            location: Some("/elsewhere".into()),
            body: b"nope".to_vec(),
            reusable: true,
        })
    }

    #[test]
    fn statuses_classified_as_specified() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify(&answer(s)), Outcome::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(
                matches!(classify(&answer(s)), Outcome::Retry { after: Some(_), .. }),
                "{s}"
            );
        }
        for s in [301, 302, 307, 400, 401, 404, 409, 422] {
            assert!(
                matches!(classify(&answer(s)), Outcome::Permanent { .. }),
                "{s}"
            );
        }
        let Outcome::Permanent { error, .. } = classify(&answer(302)) else {
            panic!()
        };
        assert!(error.contains("/elsewhere"), "{error}");
        let timeout = Err(HttpError::Timeout(Duration::from_secs(1)));
        assert!(matches!(
            classify(&timeout),
            Outcome::Retry { status: None, .. }
        ));
    }
}
