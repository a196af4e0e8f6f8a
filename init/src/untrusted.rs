//! Parsing untrusted input in PID 1 without letting a parser's panic take
//! the machine down.
//!
//! PID 1's panic hook reboots (a PID 1 that dies panics the kernel). For a
//! bug in our own boot code that is right; for a parser fed by someone
//! else (user-data and metadata YAML, a DHCP server's packets, an HTTP
//! answer) it is a reboot loop, since the same input comes back on the
//! next boot. So the code that reads such input runs inside [`contain`]
//! (synchronous) or [`Contained`] (a future): a panic there unwinds to
//! this module and becomes a [`Panicked`] error for that input, and the
//! hook, which asks [`inside`], logs it instead of rebooting.
//!
//! Why unwinding and not a child process: the parsers that matter most run
//! inside PID 1's own tasks (mozim's DHCP client parses each packet in the
//! task that holds the lease; TLS and HTTP answers are read where the
//! connection is), where a child process per packet or per answer is not
//! possible, and a child per user-data document would need its own
//! re-exec entry point, the reaper's registration and a serialised result
//! for every warning type. Unwinding costs size instead (the release
//! profile keeps `panic = "unwind"`: landing pads and unwind tables in
//! `ros`); memory is bounded separately, by the parsers' own limits
//! (`os_config::parse::yaml`, `os_config::userdata::MAX_USER_DATA`).
//! A panic anywhere else still goes to the hook and reboots, as before.
//!
//! Only what a contained closure owns or borrows is left half-done by a
//! panic; callers drop it (a DHCP client is made anew, a user-data
//! document is not saved), which is what makes unwinding safe here.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// How many contained calls are running on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A parser panicked on its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: the parser failed on this input (a bug, reported): {message}")]
pub struct Panicked {
    /// What was being read (`user-data from configdrive`).
    pub what: String,
    /// The panic's message.
    pub message: String,
}

/// True while a contained call runs on this thread: the panic hook then
/// logs and returns, and the panic unwinds to the caller.
pub fn inside() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// Counts a contained call for as long as it lives, also when it unwinds.
struct Guard;

impl Guard {
    fn enter() -> Self {
        DEPTH.with(|depth| depth.set(depth.get() + 1));
        Self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Runs `parse` on untrusted input; its panic is an error naming `what`.
pub fn contain<T>(what: &str, parse: impl FnOnce() -> T) -> Result<T, Panicked> {
    let _guard = Guard::enter();
    catch_unwind(AssertUnwindSafe(parse)).map_err(|payload| Panicked {
        what: what.to_owned(),
        message: message(payload.as_ref()),
    })
}

/// A future whose every poll is contained: it ends in `Err(Panicked)` if
/// one panics. For parsers that live in async code (the DHCP client).
#[derive(Debug)]
pub struct Contained<F> {
    what: String,
    inner: Pin<Box<F>>,
}

impl<F: Future> Contained<F> {
    /// Contains `inner`, naming it `what` in the error.
    pub fn new(what: impl Into<String>, inner: F) -> Self {
        Self {
            what: what.into(),
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Pin<Box<F>> is Unpin, so this is too.
        let this = self.get_mut();
        let inner = &mut this.inner;
        match contain(&this.what, || inner.as_mut().poll(cx)) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panicked) => Poll::Ready(Err(panicked)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_parser_is_an_error_and_the_depth_comes_back() {
        assert!(!inside());
        let result: Result<u8, _> = contain("user-data from test", || {
            assert!(inside());
            let input = "not a number";
            input.parse::<u8>().map_err(|_| ()).unwrap_or_else(|()| {
                panic!("cannot read {input:?}");
            })
        });
        assert_eq!(
            result,
            Err(Panicked {
                what: "user-data from test".into(),
                message: "cannot read \"not a number\"".into()
            })
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "user-data from test: the parser failed on this input (a bug, reported): cannot read \"not a number\""
        );
        assert!(!inside());
        assert_eq!(contain("fine", || 7), Ok(7));
    }

    #[tokio::test]
    async fn a_future_that_panics_mid_way_is_an_error() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let parser = Contained::new("DHCP on eth0", async move {
            let packet = rx.await.unwrap_or_default();
            assert!(packet < 10, "option length {packet} past the packet");
            packet
        });
        tx.send(99).unwrap();
        let error = parser.await.unwrap_err();
        assert_eq!(error.what, "DHCP on eth0");
        assert!(error.message.contains("option length 99"), "{error}");
        assert!(!inside());
        assert_eq!(Contained::new("fine", async { 3 }).await, Ok(3));
    }
}
