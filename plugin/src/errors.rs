//! How a kernel failure becomes a CNI error: the one mapping from the kernel layer's typed
//! errors to spec codes (a request refused before it was sent is a config error, code 7;
//! anything the kernel or the socket did is code 100), keeping the operation as context.

use crate::cni::CniError;
use tombstone_kernel::KernelError;

impl From<KernelError> for CniError {
    fn from(e: KernelError) -> CniError {
        if e.is_invalid_request() {
            CniError::config(e.to_string())
        } else {
            CniError::netlink(e.to_string())
        }
    }
}
