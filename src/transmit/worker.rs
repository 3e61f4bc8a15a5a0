//! The worker loop: one background thread per transmitter, with a Tokio current-thread runtime
//! of its own that owns the HTTP client, the retry timers and the redirect memory. It takes
//! jobs from the queue, answers flushes, runs the replay task and ends after a stop.

use std::collections::BTreeSet;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::attempt::Shared;
use super::drain;
use super::handoff::job_task;
use super::queue::{Control, Job};
use super::replay::replay;
use super::storage::Files;

/// Exports the worker delivers at the same time; more wait in the queue.
pub(super) const MAX_CONCURRENT_JOBS: usize = 8;

/// How far ahead the [`Beat`] keeps a timer while exports run.
const BEAT: Duration = Duration::from_millis(50);

/// A timer kept armed at most [`BEAT`] ahead while exports run, so that each export's own
/// timers (its hand-off and its deadline, see [`super::handoff`] and [`super::attempt::race`])
/// do not wake the runtime's I/O driver.
///
/// Tokio's time driver remembers, when the runtime parks, the earliest timer it waits for. A
/// timer registered later with an earlier deadline makes it wake its driver through the
/// driver's eventfd, even on the runtime's own thread: a `write` and one more `epoll_wait`
/// turn for each new timer. With nothing sooner than the replay task's idle timer, that was
/// twice per export, every export (`perf stat` on `benches/pipeline.rs` with
/// `PIPELINE_BATCH=16`: 3 `write`s and 3.8 `epoll_wait`s per export, 1.3 and 3.2 with the
/// beat; the CPU saved is a few percent of a small export, near the noise). With the beat
/// armed, the driver's next wake-up is never more than [`BEAT`] away, and an export's timers,
/// all later than that, are put in the timer wheel and nothing more. The beat costs one wake-up
/// per [`BEAT`] while exports come, and none when idle: it is put away when it fires with no
/// job running and none started since it was last armed. It changes no deadline and answers
/// nothing; it only decides when the driver looks at its timers.
#[derive(Default)]
struct Beat {
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A job started since the timer was last armed.
    started: bool,
}

impl Beat {
    /// When a job starts: arms the beat if it is not.
    fn job_started(&mut self) {
        self.started = true;
        if self.timer.is_none() {
            self.timer = Some(Box::pin(tokio::time::sleep(BEAT)));
        }
    }

    /// Polls the beat. When it fires, it is armed again if jobs run or one started meanwhile,
    /// else put away.
    fn poll(&mut self, cx: &mut Context<'_>, running: bool) {
        let Some(timer) = self.timer.as_mut() else {
            return;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return;
        }
        if running || std::mem::take(&mut self.started) {
            timer.as_mut().reset(tokio::time::Instant::now() + BEAT);
            // Registers the new deadline with this task's waker; it is `BEAT` away.
            let _ = timer.as_mut().poll(cx);
        } else {
            self.timer = None;
        }
    }
}

/// The worker's loop: takes jobs (at most [`MAX_CONCURRENT_JOBS`] at a time), answers flushes,
/// runs the replay task (with storage) and ends after a stop once everything is finished or
/// aborted.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<Job>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    enum Event {
        Finished(u64),
        Control(Option<Control>),
        Abort,
        Job(Option<Job>),
    }
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<u64>();
    let (abort_tx, abort_rx) = watch::channel(false);
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut replaying = shared.gate.storage.clone().map(|storage| {
        tokio::spawn(replay(
            Arc::clone(&shared),
            storage,
            stopping_rx,
            abort_rx.clone(),
        ))
    });
    let mut running: BTreeSet<u64> = BTreeSet::new();
    let mut beat = Beat::default();
    let mut received: u64 = 0;
    let mut flushes: Vec<(u64, Option<Instant>, std_mpsc::SyncSender<()>)> = Vec::new();
    let mut abort_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let (mut stopping, mut jobs_open, mut control_open) = (false, true, true);
    // Set by a shutdown: drain until then, and the counts when it began.
    let mut drain: Option<(Instant, u64, u64)> = None;
    let (exports_done_tx, exports_done_rx) = watch::channel(false);
    // The lowest sequence number not finished yet: a job that waits for the exports before
    // it (see [`super::handoff`]) waits until this reaches its own.
    let (settled_tx, settled_rx) = watch::channel(0u64);
    let mut senders = Vec::new();
    // Flushes sending this run's stored files (see [`settle_stored`]).
    let mut settling: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let event = poll_fn(|cx| {
            beat.poll(cx, !running.is_empty());
            if let Poll::Ready(Some(seq)) = finished_rx.poll_recv(cx) {
                return Poll::Ready(Event::Finished(seq));
            }
            if control_open {
                if let Poll::Ready(c) = control.poll_recv(cx) {
                    return Poll::Ready(Event::Control(c));
                }
            }
            if let Some(timer) = abort_timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    abort_timer = None;
                    return Poll::Ready(Event::Abort);
                }
            }
            if jobs_open && running.len() < MAX_CONCURRENT_JOBS {
                if let Poll::Ready(job) = jobs.poll_recv(cx) {
                    return Poll::Ready(Event::Job(job));
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Finished(seq) => {
                running.remove(&seq);
            }
            Event::Control(Some(Control::Flush {
                upto,
                stored_until,
                reply,
            })) => flushes.push((upto, stored_until, reply)),
            Event::Control(stop) => {
                // `None`: the transmitter was dropped; stop at once.
                let abort_at = match stop {
                    Some(Control::Stop {
                        abort_at,
                        drain: wanted,
                    }) => {
                        if !stopping && wanted {
                            let tally = &shared.gate.tally;
                            drain = Some((abort_at, tally.accepted_total(), tally.dropped_total()));
                            shared.gate.draining.store(true, Ordering::Release);
                            if let Some(storage) = &shared.gate.storage {
                                senders = (0..drain::SENDERS)
                                    .map(|_| {
                                        tokio::spawn(drain::stored(
                                            Arc::clone(&shared),
                                            Arc::clone(storage),
                                            Files::OwnFirst,
                                            abort_at,
                                            abort_rx.clone(),
                                            exports_done_rx.clone(),
                                        ))
                                    })
                                    .collect();
                            }
                        }
                        abort_at
                    }
                    _ => {
                        control_open = false;
                        Instant::now()
                    }
                };
                if !stopping {
                    stopping = true;
                    jobs.close();
                    stopping_tx.send_replace(true);
                    abort_timer = Some(Box::pin(tokio::time::sleep_until(abort_at.into())));
                }
            }
            Event::Abort => {
                abort_tx.send_replace(true);
            }
            Event::Job(Some(job)) => {
                received = job.seq + 1;
                running.insert(job.seq);
                beat.job_started();
                tokio::spawn(job_task(
                    Arc::clone(&shared),
                    job,
                    abort_rx.clone(),
                    settled_rx.clone(),
                    finished_tx.clone(),
                ));
            }
            Event::Job(None) => jobs_open = false,
        }
        settling.retain(|task| !task.is_finished());
        let settled = running.first().copied().unwrap_or(received);
        settled_tx.send_if_modified(|old| std::mem::replace(old, settled) != settled);
        flushes.retain(|(upto, stored_until, reply)| {
            let done = received >= *upto && running.first().is_none_or(|first| first >= upto);
            if done {
                match stored_until.and_then(|until| settle_stored(&shared, until, &abort_rx)) {
                    // Answered when this run's stored files are sent (or the time is up).
                    Some(sending) => {
                        let reply = reply.clone();
                        settling.push(tokio::spawn(async move {
                            let _ = sending.await;
                            let _ = reply.send(());
                        }));
                    }
                    None => {
                        let _ = reply.send(());
                    }
                }
            }
            !done
        });
        if stopping && !jobs_open && running.is_empty() {
            break;
        }
    }
    for (_, _, reply) in flushes {
        let _ = reply.send(());
    }
    exports_done_tx.send_replace(true);
    // The replay task finishes the file it is sending, or gives it back when aborted.
    if let Some(task) = replaying.as_mut() {
        let finished = poll_fn(|cx| {
            if std::pin::Pin::new(&mut *task).poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            if let Some(timer) = abort_timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
            }
            Poll::Pending
        })
        .await;
        if !finished {
            abort_tx.send_replace(true);
            let _ = task.await;
        }
    }
    // A shutdown: the drain's senders end when nothing is left or at the deadline; then say
    // what became of it all.
    for sender in senders.into_iter().chain(settling) {
        let _ = sender.await;
    }
    if let Some((_, accepted, dropped)) = drain {
        drain::report(&shared.gate, accepted, dropped);
    }
}

/// For a flush that asks for it, once the exports before it are finished: sends the files this
/// process stored (a full batch goes to disk at once while the endpoint fails) until `until`,
/// if the endpoint works again (else they are on disk after the attempts that found it
/// failing, and the replay task probes). `None` when there is nothing to do.
fn settle_stored(
    shared: &Arc<Shared>,
    until: Instant,
    abort: &watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let gate = &shared.gate;
    let storage = gate.storage.as_ref()?;
    if gate.is_failing() || !gate.on_disk.load(Ordering::Acquire) {
        return None;
    }
    // No export is waited for here: they are finished.
    let (_, done) = watch::channel(true);
    Some(tokio::spawn(drain::stored(
        Arc::clone(shared),
        Arc::clone(storage),
        Files::OwnOnly,
        until,
        abort.clone(),
        done,
    )))
}

/// Reports a job as finished when dropped, also if its task is cancelled.
pub(super) struct FinishedGuard {
    pub(super) seq: u64,
    pub(super) finished: mpsc::UnboundedSender<u64>,
}

impl Drop for FinishedGuard {
    fn drop(&mut self) {
        let _ = self.finished.send(self.seq);
    }
}
