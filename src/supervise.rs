//! `phased __supervise PARENT_PID -- PROGRAM ARGS...`: the process that runs a node's
//! command. It leads the command's process group and asks the kernel for `SIGTERM`
//! when phased (its parent) dies; on that signal (or SIGINT/SIGHUP) it kills the whole
//! group, so nothing a step started outlives phased, even after `kill -9`.
//! (`PR_SET_PDEATHSIG` alone reaches only the direct child, not what it started.)

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The binary to run as supervisor; set by the `phased` binary at start. Library users
/// that do not set it get the direct child killed on parent death, not its children.
pub static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// The hidden subcommand's name.
pub const COMMAND: &str = "__supervise";

extern "C" fn kill_group(_signal: libc::c_int) {
    // SAFETY: kill and _exit are async-signal-safe. `kill(0, ..)` targets our own group,
    // which we lead: the command and everything it started, and us.
    unsafe {
        libc::kill(0, libc::SIGKILL);
        libc::_exit(137);
    }
}

/// Runs the supervisor; returns its exit code (the command's, or 128 + signal).
pub fn main(args: &[String]) -> i32 {
    let Some(split) = args.iter().position(|a| a == "--") else { return 2 };
    let Some(parent) = args.first().and_then(|p| p.parse::<libc::pid_t>().ok()) else { return 2 };
    let command: Vec<CString> = match args[split + 1..].iter().map(|a| CString::new(a.as_bytes())).collect() {
        Ok(c) => c,
        Err(_) => return 2,
    };
    if command.is_empty() {
        return 2;
    }
    // SAFETY: plain syscalls and signal handlers that only call async-signal-safe code.
    unsafe {
        if libc::getpgrp() != libc::getpid() {
            libc::setpgid(0, 0);
        }
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(signal, kill_group as *const () as libc::sighandler_t);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() != parent {
            // phased died before we could ask to be told.
            kill_group(libc::SIGTERM);
        }
        let child = libc::fork();
        if child < 0 {
            return 126;
        }
        if child == 0 {
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::signal(signal, libc::SIG_DFL);
            }
            let mut argv: Vec<*const libc::c_char> = command.iter().map(|c| c.as_ptr()).collect();
            argv.push(std::ptr::null());
            libc::execvp(argv[0], argv.as_ptr());
            // exec failed. The supervisor is single-threaded, so formatting here is safe.
            let error = std::io::Error::last_os_error();
            let message = format!("phased: cannot run `{}`: {error}\n", command[0].to_string_lossy());
            libc::write(2, message.as_ptr().cast(), message.len());
            // The shell's convention: 127 for "not found", 126 for "cannot execute".
            libc::_exit(if error.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
        let mut status = 0;
        loop {
            let done = libc::waitpid(child, &mut status, 0);
            if done == child {
                break;
            }
            if done < 0 && *libc::__errno_location() != libc::EINTR {
                return 126;
            }
        }
        if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) }
    }
}
