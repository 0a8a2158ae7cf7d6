//! Process-wide allocator settings, applied by the binary and the benchmarks at start-up.
//!
//! The library never calls this itself: how a process uses its allocator is the process's choice.

/// Asks glibc to keep freed memory for reuse instead of returning it to the kernel.
///
/// Every tensor op of the CPU backend allocates a fresh buffer of a few MB; with glibc's default
/// thresholds those come from `mmap` or are trimmed from the heap top when freed, so each step
/// pays for zeroed page faults all over again (about a fifth of a training step in profiles).
/// Applied once per process; a no-op on other C libraries. Changes speed only, never results.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            unsafe extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // SAFETY: mallopt only changes allocator thresholds; both values are in range
            // (32 MiB is glibc's maximum mmap threshold on 64-bit targets).
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 32 << 20);
                mallopt(M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}
