mod commands;

fn main() -> std::process::ExitCode {
    bound_the_heap();
    commands::main()
}

/// The pipeline moves MiB-sized buffers between threads. glibc would serve them from
/// per-thread arenas once its adaptive mmap threshold has risen past their size, and
/// arenas keep what they once held: peak RSS would grow with the number of threads and
/// the length of the run. A fixed threshold returns every large buffer to the kernel
/// when it is freed, and two arenas are plenty for a handful of threads.
fn bound_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
