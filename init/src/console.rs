//! Lines for the person at the console, straight to /dev/console: the
//! few things they must see whatever the log level (ready, shutdown,
//! configuration problems).

use std::io::Write;

/// A problem for the person at the console: to the log, and as a
/// `ros: …` line on the console.
pub fn report(message: &str) {
    tracing::error!("{message}");
    line(&format!("ros: {message}"));
}

pub fn line(text: &str) {
    if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(console, "{text}");
    }
}
