//! A heap buffer aligned for O_DIRECT writes of the journal's block-aligned batches, reused
//! from batch to batch (the uring driver writes group commits from it).

use std::alloc::Layout;

use super::journal::BLOCK_BYTES;

/// The alignment O_DIRECT needs of a buffer's address: one block (4 KiB covers 512-byte and
/// 4-KiB-sector devices alike).
const DIRECT_ALIGN: usize = BLOCK_BYTES;

/// A heap buffer aligned to [`DIRECT_ALIGN`], reused from batch to batch.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    capacity: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer holding a copy of `bytes` (whose length is a whole number of blocks).
    pub fn copy_of(bytes: &[u8], reuse: Option<AlignedBuf>) -> AlignedBuf {
        let mut buf = match reuse {
            Some(buf) if buf.capacity >= bytes.len() => buf,
            _ => {
                let capacity = bytes.len().max(DIRECT_ALIGN);
                let layout = Layout::from_size_align(capacity, DIRECT_ALIGN).expect("layout");
                // SAFETY: a non-zero size with a power-of-two alignment.
                let ptr = unsafe { std::alloc::alloc(layout) };
                let ptr = std::ptr::NonNull::new(ptr)
                    .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
                AlignedBuf {
                    ptr,
                    capacity,
                    len: 0,
                }
            }
        };
        // SAFETY: `capacity >= bytes.len()`, and the regions are distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.ptr.as_ptr(), bytes.len()) };
        buf.len = bytes.len();
        buf
    }
}

impl AlignedBuf {
    /// The bytes it holds.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len <= capacity` bytes were written by `copy_of`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, DIRECT_ALIGN).expect("layout");
        // SAFETY: allocated in `copy_of` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}
