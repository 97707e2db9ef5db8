//! Runs a test's scenario in a child process of the test binary, under a time limit, so that a
//! hang or an abort inside the global allocator fails the test with a message instead of blocking
//! or killing the whole run. Shared by the allocator test binaries (`#[path]` include).

use std::io::{Read, Seek};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PARENA_ALLOC_TEST_CHILD";

/// In the child (the env var names `test`): runs `scenario` and returns. In the parent: re-runs
/// this test binary for `test` alone and fails if the child does not exit successfully within
/// `limit` (it is killed then). The child's output is kept and shown only when it fails.
pub fn in_child(test: &str, limit: Duration, scenario: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        scenario();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut log = tempfile::tempfile().expect("a file for the child's output");
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .stdout(Stdio::from(log.try_clone().expect("the output file")))
        .stderr(Stdio::from(log.try_clone().expect("the output file")))
        .spawn()
        .expect("spawn the test binary as a child");
    let mut output = || {
        let mut s = String::new();
        log.rewind().expect("rewind the output file");
        let _ = log.read_to_string(&mut s);
        s
    };
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => {
                assert!(
                    status.success(),
                    "{test}: the scenario died inside the allocator ({status}); its output:\n{}",
                    output()
                );
                return;
            }
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{test}: the scenario hung (no exit within {limit:?}); killed it. Its output:\n{}",
                    output()
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
