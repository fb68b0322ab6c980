//! The `phased` binary: all the work is in the library; see `phased::cli`.

/// Validation builds many small allocations (a positioned YAML tree); mimalloc handles
/// that churn markedly better than glibc's allocator (see the README's performance
/// section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(phased::supervise::COMMAND) {
        let code = phased::supervise::main(&args[1..]);
        return std::process::ExitCode::from(code.clamp(0, 255) as u8);
    }
    if let Ok(me) = std::env::current_exe() {
        let _ = phased::supervise::SUPERVISOR.set(me);
    }
    phased::cli::main()
}
