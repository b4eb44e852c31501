//! Loading and unloading the driver's module with the system's module tools.

use std::io;
use std::process::{Command, Stdio};

/// Runs a module tool (`rmmod`, `modprobe`, `modprobe -r`, ...) on `module`.
///
/// Returns `Ok(Ok(()))` if the tool succeeded and `Ok(Err(why))` with its
/// exit status and standard error if it failed (for `rmmod` of a module in
/// use, that is the expected answer); `Err` only if it could not be started.
pub fn run_tool(tool: &str, module: &str) -> io::Result<Result<(), String>> {
    run_tool_args(tool, &[module])
}

/// [`run_tool`] with any arguments (`modprobe vivid n_devs=2 ...`).
pub fn run_tool_args(tool: &str, args: &[&str]) -> io::Result<Result<(), String>> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    Ok(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::run_tool;

    #[test]
    fn reports_success_failure_and_missing_tools() {
        assert_eq!(run_tool("true", "x").unwrap(), Ok(()));
        let failed = run_tool("false", "x").unwrap().unwrap_err();
        assert!(failed.contains("exit status: 1"), "{failed}");
        assert!(run_tool("/nonexistent/rmmod", "x").is_err());
    }
}
