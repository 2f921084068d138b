//! Unix signals as the daemon's inputs: TERM/INT cancel the shutdown token, HUP asks
//! for a config reload. Tests drive the same token and channel directly.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Installs the handlers now (so a signal arriving during startup is not fatal) and
/// forwards signals until shutdown. Must be called inside a tokio runtime.
pub fn install(shutdown: CancellationToken, reload: mpsc::Sender<()>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    info!(signal = "SIGTERM", "shutting down: finishing the action in flight");
                    shutdown.cancel();
                }
                _ = int.recv() => {
                    info!(signal = "SIGINT", "shutting down: finishing the action in flight");
                    shutdown.cancel();
                }
                _ = hup.recv() => {
                    info!(signal = "SIGHUP", "reloading the config");
                    // A reload already queued covers this one too.
                    let _ = reload.try_send(());
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
    Ok(())
}
