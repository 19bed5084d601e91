//! `membarrier(2)`, Linux 4.14 and later.

use std::io;

const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

fn membarrier(cmd: libc::c_long) -> libc::c_long {
    // SAFETY: membarrier takes a command and flags (0) and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
}

/// True once the process may use private expedited membarriers.
pub(super) fn register() -> bool {
    let wanted = MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
    let offered = membarrier(MEMBARRIER_CMD_QUERY);
    offered >= 0
        && offered & wanted == wanted
        && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
}

pub(super) fn heavy() {
    if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
        // Registered at start, so this cannot fail short of a kernel bug; carrying on would let
        // the owner of a slot and a thief exchange it at once.
        panic!(
            "grove: membarrier failed after the process registered for it: {}",
            io::Error::last_os_error()
        );
    }
}
