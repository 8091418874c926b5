#pragma once
/// \file Transparent huge pages for large, long-lived buffers (docs/ARCHITECTURE.md §5.9).
///
/// Debian's kernels default to THP "madvise": a buffer gets 2 MiB pages only if asked. Rows
/// read in scattered order (k-means reads only the rows its bounds leave open) then miss the
/// TLB on every row with 4 KiB pages. The advice changes no value: only where the pages lie.
#include <cstddef>

namespace latent::huge_pages {

/// Asks the kernel (madvise MADV_HUGEPAGE) to back the whole 2 MiB pages inside
/// [p, p + bytes) with huge pages. Call before the buffer is first written, so that its page
/// faults take huge pages. Advice only: does nothing if THP is off, if the range holds no
/// whole 2 MiB page, or if the call fails. Local, thread-safe, never throws.
void advise(void* p, std::size_t bytes) noexcept;

/// bytes rounded up to whole 2 MiB pages, allocated 2 MiB-aligned and advised (advise());
/// below 4 MiB a plain malloc. Throws std::bad_alloc. Free with std::free. Local.
void* allocate(std::size_t bytes);

}  // namespace latent::huge_pages
