//! The one way to run code elsewhere (the CNI plugins' `ns.Do`): a fresh thread, entered into a
//! network namespace when one is given, with a current-thread runtime of its own. Side effects:
//! a thread, and `setns(2)` on that thread only (never on a caller's or a tokio worker's
//! thread). The thread exits when the work is done, so nothing else ever runs in that
//! namespace; a netlink socket opened by the work belongs to it (a socket belongs to the
//! namespace of the thread that created it).
//!
//! [`run`] blocks the caller (the one-shot commands); [`spawn`] is awaited without blocking the
//! caller's runtime (the daemon's event loop). The work's future is built on the new thread, so
//! it need not be `Send`.
//!
//! [`inside`] is the short form for what must merely *start* in a namespace (netavark's way): a
//! synchronous closure run on the calling thread between `setns(2)` into the namespace and
//! `setns(2)` back, such as opening the netlink socket that then stays bound to that namespace
//! and is used from the caller's own runtime, or opening a /proc/sys/net file. No thread, no
//! runtime; nothing awaits while the thread is elsewhere, so nothing else runs there.

use std::future::Future;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

use crate::netns::Netns;

/// Runs `work` on a new thread named `name` (in `ns` when given) and waits for its result.
pub fn run<T, F, Fut>(name: &str, ns: Option<&Netns>, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let what = what(name, ns);
    let handle = start(name, ns, work, |res| res)?;
    handle
        .join()
        .map_err(|_| anyhow!("the {what} thread panicked"))?
}

/// Runs `work` on a new thread named `name` (in `ns` when given) and awaits its result without
/// blocking the caller's runtime.
pub async fn spawn<T, F, Fut>(name: &str, ns: Option<&Netns>, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    start(name, ns, work, move |res| {
        let _ = tx.send(res);
    })?;
    rx.await
        .map_err(|_| anyhow!("the {name} thread ended without an answer"))?
}

/// Runs `f` on the calling thread inside `ns`, then returns the thread to the namespace it was
/// in. Should the way back fail, the process aborts: it must never go on in the wrong namespace.
pub fn inside<T>(ns: &Netns, f: impl FnOnce() -> T) -> Result<T> {
    let home = std::fs::File::open("/proc/thread-self/ns/net")
        .context("cannot open /proc/thread-self/ns/net (is /proc mounted?)")?;
    setns(ns.fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
        anyhow!("cannot enter the container's network namespace: {e} (needs CAP_SYS_ADMIN)")
    })?;
    let out = f();
    if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
        eprintln!(
            "docker-netattach: fatal: cannot return to its own network namespace after entering a container's: {e}"
        );
        std::process::abort();
    }
    Ok(out)
}

/// What the messages call the thread: "namespace" for one that enters a namespace.
fn what<'a>(name: &'a str, ns: Option<&Netns>) -> &'a str {
    if ns.is_some() { "namespace" } else { name }
}

/// Starts the thread: setns first (when `ns` is given), then a runtime, then `work`, whose
/// result goes to `reply` (and becomes the thread's own result).
fn start<T, R, F, Fut>(
    name: &str,
    ns: Option<&Netns>,
    work: F,
    reply: impl FnOnce(Result<T>) -> R + Send + 'static,
) -> Result<std::thread::JoinHandle<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let fd: Option<OwnedFd> = ns
        .map(|n| n.fd().try_clone_to_owned())
        .transpose()
        .context("cannot duplicate the namespace fd")?;
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || reply(enter_and_run(fd, work)))
        .with_context(|| format!("cannot start the {} thread", what(name, ns)))
}

/// On the new thread: enters the namespace, builds the runtime, runs the work.
fn enter_and_run<T, F, Fut>(fd: Option<OwnedFd>, work: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let inside = fd.is_some();
    if let Some(fd) = fd {
        setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| {
            anyhow!("cannot enter the container's network namespace: {e} (needs CAP_SYS_ADMIN)")
        })?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            if inside {
                anyhow!("cannot start a runtime in the container namespace: {e}")
            } else {
                anyhow!("cannot start a runtime: {e}")
            }
        })?;
    rt.block_on(work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_the_value_and_the_error_unchanged() {
        let v = run("unit-ok", None, || async { Ok(41 + 1) }).unwrap();
        assert_eq!(v, 42);
        let e = run("unit-err", None, || async {
            Err::<(), _>(anyhow!("inner failure").context("outer"))
        })
        .unwrap_err();
        assert_eq!(format!("{e:#}"), "outer: inner failure");
    }

    #[test]
    fn run_is_on_a_thread_of_its_own_with_a_runtime() {
        let caller = std::thread::current().id();
        let (id, name) = run("unit-thread", None, || async {
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let t = std::thread::current();
            Ok((t.id(), t.name().map(str::to_string)))
        })
        .unwrap();
        assert_ne!(id, caller);
        assert_eq!(name.as_deref(), Some("unit-thread"));
    }

    #[test]
    fn a_panic_is_an_error() {
        let e = run("unit-panic", None, || async {
            if true {
                panic!("on purpose");
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "the unit-panic thread panicked");
    }

    #[test]
    fn spawn_is_awaited_from_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v = rt.block_on(spawn("unit-spawn", None, || async {
            // Not Send: the future is built on the worker thread.
            let local = std::rc::Rc::new(7);
            tokio::task::yield_now().await;
            Ok(*local)
        }));
        assert_eq!(v.unwrap(), 7);
        let e = rt
            .block_on(spawn("unit-spawn", None, || async {
                Err::<(), _>(anyhow!("nope"))
            }))
            .unwrap_err();
        assert_eq!(e.to_string(), "nope");
    }
}
