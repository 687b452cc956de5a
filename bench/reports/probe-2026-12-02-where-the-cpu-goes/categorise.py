import sys, re, collections
# Sorts rowhook's perf samples by the syscall or code they fall in.
# perf script -i perf.data -F comm,ip,sym,dso | python3 categorise.py
cats = collections.Counter(); sub = collections.Counter(); n = 0
def classify(frames, comm):
    f = ' '.join(frames)
    kern = lambda s: s in f
    if '__x64_sys_sendto' in f or '__sys_sendto' in f:
        c = 'sendto'
        if any(x in f for x in ('finish_task_switch', '__schedule')): s = 'switched out (the woken sink runs)'
        elif any(x in f for x in ('try_to_wake_up', 'sock_def_readable', '__wake_up')): s = "waking the sink"
        elif any(x in f for x in ('tcp_v4_rcv', 'ip_rcv', '__netif_receive_skb', 'process_backlog', 'net_rx_action')): s = "loopback receive (sink's TCP side)"
        else: s = 'send side (tcp_sendmsg, ip out, copies)'
        return c, s
    if '__x64_sys_recvfrom' in f or '__sys_recvfrom' in f: return 'recvfrom', ''
    if 'sys_io_uring_enter' in f:
        if any(x in f for x in ('finish_task_switch', '__schedule')): return 'io_uring_enter', 'sleep/switch'
        if 'io_submit_sqes' in f: return 'io_uring_enter', 'submit'
        return 'io_uring_enter', 'other (completions, task work)'
    if '__x64_sys_io_uring_enter' in f: return 'io_uring_enter', ''
    if any('sys_' in x and x.startswith('__x64') for x in frames): return 'other syscalls', [x for x in frames if x.startswith('__x64')][0]
    if 'perf_trace' in f or 'perf_tp_event' in f or 'perf_syscall' in f or 'syscall_trace_enter' in f: return 'syscall tracepoints (the bench\'s perf stat)', ''
    if any(x in f for x in ('asm_sysvec', 'asm_common_interrupt', 'irq_exit', 'do_softirq')): return 'interrupts/softirq', ''
    if any(x in f for x in ('task_work_run', 'tctx_task_work', 'io_uring')): return 'io_uring task work', ''
    leaf = frames[0] if frames else '?'
    if leaf.startswith('k:'):
        if any(x in f for x in ('finish_task_switch', '__schedule')): return 'kernel: switched out outside a syscall (preempted)', ''
        return 'kernel other', leaf[2:]
    if leaf.startswith(('[', '0x')) or leaf == '[unknown]': return 'user: unknown', ''
    if leaf.startswith(('__vdso', 'vdso')): return 'user: clock', ''
    if 'glommio' in leaf: return 'user: glommio', ''
    if any(x in leaf for x in ('mi_', 'malloc', 'free', 'memcpy', 'memmove', 'memset', '__memcpy', '_mi_')): return 'user: allocator/mem*', ''
    if 'clock_gettime' in f or 'vdso' in leaf: return 'user: clock', ''
    if any(x in leaf for x in ('entry_SYSCALL', 'syscall_exit', 'syscall_return', 'do_syscall')): return 'syscall entry/exit', ''
    return 'user: rowhook/std/crates', ''
cur = []; comm = None
def flush():
    global n
    if cur:
        c, s = classify(cur, comm); cats[c] += 1; sub[(c, s)] += 1; n += 1
for line in sys.stdin:
    line = line.rstrip('\n')
    if not line.strip():
        flush(); cur = []; continue
    if not line.startswith((' ', '\t')):
        comm = line.split()[0]; continue
    parts = line.strip().split(None, 1)
    if len(parts) == 2:
        sym = parts[1].split(' (')[0]
        sym = re.sub(r'\+0x[0-9a-f]+$', '', sym)
        if 'kernel.kallsyms' in parts[1]: sym = 'k:' + sym
        cur.append(sym)
flush()
for c, k in cats.most_common():
    print(f"{100*k/n:5.1f}%  {c}")
    for (cc, s), kk in [x for x in sub.most_common() if x[0][0] == c][:4]:
        if s: print(f"        {100*kk/n:5.1f}%  {s}")
print('samples', n)
