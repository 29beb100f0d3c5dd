//! How a kernel failure becomes a CNI error: the one mapping from the kernel layer's typed
//! errors to spec codes (a request refused before it was sent is a config error, code 7;
//! anything the kernel or the socket did is code 100), keeping the operation as context.
//! Both plugins reach it through [`KernelResult::cni`] (or `.map_err(cni_error)`).

use tombstone_cni::CniError;
use tombstone_kernel::KernelError;

/// The CNI error for a kernel failure.
pub fn cni_error(e: KernelError) -> CniError {
    if e.is_invalid_request() {
        CniError::config(e.to_string())
    } else {
        CniError::netlink(e.to_string())
    }
}

/// `.cni()` on a kernel result: its error as a CNI error, by [`cni_error`].
pub trait KernelResult<T> {
    fn cni(self) -> tombstone_cni::Result<T>;
}

impl<T> KernelResult<T> for Result<T, KernelError> {
    fn cni(self) -> tombstone_cni::Result<T> {
        self.map_err(cni_error)
    }
}
