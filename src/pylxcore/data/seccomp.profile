2
denylist
reject_force_umount
[all]
kexec_load errno 1
kexec_file_load errno 1
open_by_handle_at errno 1
init_module errno 1
finit_module errno 1
delete_module errno 1
keyctl errno 1
add_key errno 1
request_key errno 1
bpf errno 1
perf_event_open errno 1
userfaultfd errno 1
acct errno 1
swapon errno 1
swapoff errno 1
quotactl errno 1
lookup_dcookie errno 1
unshare errno 1
setns errno 1
pivot_root errno 1
reboot errno 1
settimeofday errno 1
clock_settime errno 1
clock_adjtime errno 1
adjtimex errno 1
syslog errno 1
iopl errno 1
ioperm errno 1
name_to_handle_at errno 1
fsopen errno 1
fsmount errno 1
fspick errno 1
open_tree errno 1
move_mount errno 1
mount_setattr errno 1
clone3 errno 38
clone errno 1 [0,0x10000000,SCMP_CMP_MASKED_EQ,0x10000000]
