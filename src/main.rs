//! The `phased` binary: all the work is in the library; see `phased::cli`.

/// Validation builds many small allocations (a positioned YAML tree); mimalloc handles
/// that churn markedly better than glibc's allocator (see the README's performance
/// section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    phased::cli::main()
}
