//! Many groups' committed offsets and commits over one client per batch (two for a batch of
//! 64 groups or more, see [`clients_for`]): librdkafka's admin calls
//! `ListConsumerGroupOffsets` (OffsetFetch) and `AlterConsumerGroupOffsets` (OffsetCommit from
//! outside the group), one group per call as librdkafka requires, with up to `concurrency`
//! calls in flight in all.
//!
//! A client per group cost about 5 ms of CPU (start-up, bootstrap and coordinator
//! connections, teardown) before its one request; at 5 000 groups that was most of the time
//! of `kdr offsets translate`. Here the client, its connections and librdkafka's coordinator
//! cache are shared by every group of the batch, and each group costs a request.
//!
//! Each group's answer is what the per-group functions ([`Cluster::committed_offsets`],
//! [`Cluster::commit_offsets`]) give: `None` for a partition without a committed offset, a
//! topic or partition the cluster does not have named as such, [`KafkaError::GroupActive`]
//! for a commit the broker refuses because the group has members. Transient errors (the
//! coordinator moving or loading) are asked again until the group's own bound passes, as
//! the per-group paths retry; failures of the whole cluster (refused credentials, every
//! broker down) end the batch and are every unanswered group's answer.
//!
//! All of kdr's unsafe code for these calls is in this file, behind [`AdminQueue`].

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_void};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use rdkafka::bindings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::bound::{Bound, LONGEST_WAIT, off_thread, wait_ms};
use super::cluster::Cluster;
use super::context::KdrContext;
use super::error::{KafkaError, Operation};
use super::scope::{Scope, about_partition, group_is_active, retriable};
use super::session::{POLL_STEP, Session};
use super::types::{GroupCommit, GroupPartitions, TopicPartition};

/// Each asked partition and its committed offset, as [`Cluster::committed_offsets`] gives it.
pub(super) type Committed = Vec<(TopicPartition, Option<i64>)>;

/// The first wait before a group whose call met a transient error is asked again; it doubles
/// with each try, within the group's bound.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// How often the driver lets librdkafka deliver its client events (errors, logs) while calls
/// keep answering.
const SERVE_EVERY: Duration = Duration::from_millis(100);

/// librdkafka refuses an admin request timeout above an hour.
const LONGEST_REQUEST: Duration = Duration::from_secs(3600);

impl Cluster {
    /// Each group's committed offsets for its partitions, in the order asked, over one
    /// client with at most `concurrency` calls in flight.
    pub(super) async fn fetch_group_offsets(
        &self,
        asks: &[GroupPartitions],
        concurrency: NonZeroUsize,
    ) -> Vec<Result<Committed, KafkaError>> {
        let calls = asks
            .iter()
            .map(|ask| GroupCall::Fetch {
                group: ask.group.clone(),
                partitions: ask.partitions.clone(),
            })
            .collect();
        self.group_calls(calls, concurrency)
            .await
            .into_iter()
            .map(|answer| {
                answer.map(|done| match done {
                    Done::Fetched(committed) => committed,
                    Done::Committed => Vec::new(),
                })
            })
            .collect()
    }

    /// Commits each group's offsets, in the order given, over one client with at most
    /// `concurrency` calls in flight; each group's outcome as [`Cluster::commit_offsets`]
    /// gives it.
    pub(super) async fn alter_group_offsets(
        &self,
        commits: &[GroupCommit],
        concurrency: NonZeroUsize,
    ) -> Vec<Result<(), KafkaError>> {
        let calls = commits
            .iter()
            .map(|commit| GroupCall::Commit {
                group: commit.group.clone(),
                offsets: commit.offsets.clone(),
            })
            .collect();
        self.group_calls(calls, concurrency)
            .await
            .into_iter()
            .map(|answer| answer.map(|_| ()))
            .collect()
    }

    /// Runs `calls` on [`clients_for`] clients, each on a blocking thread with its share of
    /// the `concurrency`. Each client's blocking side is bounded by one operation timeout per
    /// round of its calls in flight (what the calls could take one round after another) and
    /// stops as soon as its caller stops waiting.
    async fn group_calls(
        &self,
        calls: Vec<GroupCall>,
        concurrency: NonZeroUsize,
    ) -> Vec<Result<Done, KafkaError>> {
        let mut answers: Vec<Option<Result<Done, KafkaError>>> =
            calls.iter().map(|call| call.without_asking(self)).collect();
        let asked: Vec<(usize, GroupCall)> = calls
            .into_iter()
            .enumerate()
            .filter(|(index, _)| answers[*index].is_none())
            .collect();
        if asked.is_empty() {
            return answers.into_iter().flatten().collect();
        }
        let clients = clients_for(asked.len(), concurrency);
        let share = NonZeroUsize::new(concurrency.get() / clients).unwrap_or(NonZeroUsize::MIN);
        let mut parts: Vec<Vec<(usize, GroupCall)>> = (0..clients).map(|_| Vec::new()).collect();
        for (place, call) in asked.into_iter().enumerate() {
            parts[place % clients].push(call);
        }
        let mut running = tokio::task::JoinSet::new();
        for part in parts {
            let cluster = self.clone();
            running.spawn(async move { cluster.on_client(part, share).await });
        }
        for (index, result) in running.join_all().await.into_iter().flatten() {
            answers[index] = Some(result);
        }
        answers
            .into_iter()
            .map(|answer| answer.expect("every call answered"))
            .collect()
    }

    /// Runs `asked` on one client of its own, at most `concurrency` in flight; each call's
    /// answer by its place in the batch.
    async fn on_client(
        &self,
        asked: Vec<(usize, GroupCall)>,
        concurrency: NonZeroUsize,
    ) -> Vec<(usize, Result<Done, KafkaError>)> {
        let Some((_, first)) = asked.first() else {
            return Vec::new();
        };
        let per_call = self.operation_timeout();
        let rounds = u32::try_from(asked.len().div_ceil(concurrency.get())).unwrap_or(u32::MAX);
        let bound = per_call.saturating_mul(rounds).min(LONGEST_WAIT);
        let scope = self.scope(first.operation(), bound);
        let operations: Vec<(usize, Operation)> = asked
            .iter()
            .map(|(index, call)| (*index, call.operation()))
            .collect();
        let config = self.meta_config();
        let (cluster, session_scope) = (self.clone(), scope.clone());
        let limits = Limits {
            per_call,
            concurrency: concurrency.get(),
        };
        let bound = Bound::new(bound, None, Instant::now());
        let driven = off_thread(&scope, bound, move |answer| {
            let session = match Session::open(&config, session_scope, bound.deadline) {
                Ok(session) => session,
                Err(error) => {
                    let _ = answer.send(Err(error));
                    return;
                }
            };
            let driven = drive(&cluster, &session, asked, limits, &|| answer.is_closed());
            let _ = answer.send(Ok(driven));
            drop(session);
        })
        .await;
        match driven {
            Ok(driven) => driven,
            Err(error) => operations
                .into_iter()
                .map(|(index, operation)| (index, Err(for_item(&error, operation))))
                .collect(),
        }
    }
}

/// How many clients a batch of `calls` group calls is spread over. A broker answers one
/// connection's requests one after another; a second client lets its group coordinator work on
/// two groups at once where it can. `make bench-scale`, two runs each, one client against two:
/// `--apply` of 5 000 groups 11.1 s and 8.3 s against 9.3 s and 7.8 s; a translate once DR
/// holds their commits 17.4 s and 10.6 s against 9.3 s and 9.3 s. Small batches keep one client
/// (each costs its start-up), and the `concurrency` calls in flight stay the total.
fn clients_for(calls: usize, concurrency: NonZeroUsize) -> usize {
    if calls >= CALLS_FOR_A_SECOND_CLIENT {
        CLIENTS.min(concurrency.get())
    } else {
        1
    }
}

/// The most clients one batch of group calls opens.
const CLIENTS: usize = 2;

/// A batch opens its second client from this many calls on.
const CALLS_FOR_A_SECOND_CLIENT: usize = 64;

/// How the driver paces its calls.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Each group's bound, from its first send to its answer, retries included.
    per_call: Duration,
    /// Calls in flight at once.
    concurrency: usize,
}

/// One group's call.
enum GroupCall {
    Fetch {
        group: String,
        partitions: Vec<TopicPartition>,
    },
    Commit {
        group: String,
        offsets: Vec<(TopicPartition, i64)>,
    },
}

/// A group's call that came back.
enum Done {
    Fetched(Committed),
    Committed,
}

/// What became of one call's answer.
enum Verdict {
    Done(Result<Done, KafkaError>),
    /// A transient error: ask again if the group's bound allows, else this is the answer.
    Again(KafkaError),
}

impl GroupCall {
    fn group(&self) -> &str {
        match self {
            GroupCall::Fetch { group, .. } | GroupCall::Commit { group, .. } => group,
        }
    }

    fn operation(&self) -> Operation {
        let group = self.group().to_owned();
        match self {
            GroupCall::Fetch { .. } => Operation::FetchCommittedOffsets { group },
            GroupCall::Commit { .. } => Operation::CommitOffsets { group },
        }
    }

    /// The answer when nothing needs asking, as the per-group functions give it: nothing to
    /// fetch or commit, or an offset no broker would take.
    fn without_asking(&self, cluster: &Cluster) -> Option<Result<Done, KafkaError>> {
        match self {
            GroupCall::Fetch { partitions, .. } => {
                partitions.is_empty().then(|| Ok(Done::Fetched(Vec::new())))
            }
            GroupCall::Commit { offsets, .. } => {
                if let Some((tp, offset)) = offsets.iter().find(|(_, offset)| *offset < 0) {
                    let scope = cluster.scope(self.operation(), cluster.operation_timeout());
                    return Some(Err(
                        scope.client(format!("offset {offset} for partition {tp} is negative"))
                    ));
                }
                offsets.is_empty().then_some(Ok(Done::Committed))
            }
        }
    }

    /// The partition list the call sends: each partition once, in the order first asked.
    fn request(&self) -> Result<TopicPartitionList, String> {
        let mut list = TopicPartitionList::new();
        let mut seen = std::collections::HashSet::new();
        match self {
            GroupCall::Fetch { partitions, .. } => {
                for tp in partitions.iter().filter(|tp| seen.insert(*tp)) {
                    list.add_partition(&tp.topic, tp.partition);
                }
            }
            GroupCall::Commit { offsets, .. } => {
                for (tp, offset) in offsets {
                    if seen.insert(tp) {
                        list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                            .map_err(|error| error.to_string())?;
                    } else {
                        return Err(format!("partition {tp} is given twice"));
                    }
                }
            }
        }
        Ok(list)
    }

    /// Sends the call, answered on `queue` with `tag`, bounded by `timeout`.
    fn send(&self, queue: &AdminQueue<'_>, tag: usize, timeout: Duration) -> Result<(), String> {
        let list = self.request()?;
        match self {
            GroupCall::Fetch { group, .. } => queue.list_offsets(tag, group, &list, timeout),
            GroupCall::Commit { group, .. } => queue.alter_offsets(tag, group, &list, timeout),
        }
    }

    /// The group's answer from what came back, in the per-group functions' terms.
    fn read(&self, session: &Session, scope: &Scope, answer: GroupAnswer) -> Verdict {
        match (self, answer) {
            (_, GroupAnswer::Failed(code, detail)) => self.failed(session, scope, code, detail),
            (GroupCall::Fetch { partitions, .. }, GroupAnswer::Partitions(found)) => {
                if let Some(failed) = found.iter().find_map(|p| Some((p.error?, p))) {
                    let (code, p) = failed;
                    let detail = format!("partition {}-{}: {code}", p.topic, p.partition);
                    return self.failed(session, scope, code, detail);
                }
                let offsets: HashMap<(&str, i32), i64> = found
                    .iter()
                    .map(|p| ((p.topic.as_str(), p.partition), p.offset))
                    .collect();
                let committed = partitions
                    .iter()
                    .map(|tp| {
                        let offset = offsets
                            .get(&(tp.topic.as_str(), tp.partition))
                            .copied()
                            .filter(|offset| *offset >= 0);
                        (tp.clone(), offset)
                    })
                    .collect();
                Verdict::Done(Ok(Done::Fetched(committed)))
            }
            (GroupCall::Commit { group, .. }, GroupAnswer::Partitions(found)) => {
                let Some((code, p)) = found.iter().find_map(|p| Some((p.error?, p))) else {
                    return Verdict::Done(Ok(Done::Committed));
                };
                if retriable(code) {
                    return Verdict::Again(scope.error_for_code(code, session.last_error(None)));
                }
                if group_is_active(code) {
                    return Verdict::Done(Err(KafkaError::GroupActive {
                        cluster: scope.cluster,
                        operation: scope.operation.clone(),
                        group: group.clone(),
                        detail: code.to_string(),
                    }));
                }
                let error = scope.error_for_code(code, session.last_error(None));
                let tp = TopicPartition::new(p.topic.clone(), p.partition);
                Verdict::Done(Err(about_partition(error, &tp)))
            }
        }
    }

    /// A call that failed with `code`: asked again when that may help; a fetch of a topic or
    /// partition the cluster does not have says which, from fresh metadata; a commit the
    /// broker refuses for the group's members is [`KafkaError::GroupActive`].
    fn failed(
        &self,
        session: &Session,
        scope: &Scope,
        code: RDKafkaErrorCode,
        detail: String,
    ) -> Verdict {
        if retriable(code) {
            let last = session.last_error(Some(detail));
            return Verdict::Again(scope.error_for_code(code, last));
        }
        match self {
            GroupCall::Fetch { partitions, .. } => {
                if let Some(missing) = session.unknown_partition(code, partitions) {
                    return Verdict::Done(Err(retarget(missing, scope.operation.clone())));
                }
            }
            GroupCall::Commit { group, .. } if group_is_active(code) => {
                return Verdict::Done(Err(KafkaError::GroupActive {
                    cluster: scope.cluster,
                    operation: scope.operation.clone(),
                    group: group.clone(),
                    detail: code.to_string(),
                }));
            }
            GroupCall::Commit { .. } => {}
        }
        Verdict::Done(Err(scope.error_for_code(code, session.last_error(None))))
    }
}

/// One call in the driver: its group's place in the batch, and its clock.
struct Pending {
    index: usize,
    call: GroupCall,
    scope: Scope,
    /// When the group's bound passes (set at its first send).
    deadline: Option<Instant>,
    /// When to send it again after a transient error, and the wait after that.
    again_at: Option<Instant>,
    backoff: Duration,
    last: Option<KafkaError>,
}

/// Sends `calls` on `session`'s client, `limits.concurrency` in flight, and collects each
/// answer by the call's place in the batch. Stops early when the whole cluster fails (every
/// unanswered call then gets that failure) or when `abandoned` says the caller is gone.
fn drive(
    cluster: &Cluster,
    session: &Session,
    calls: Vec<(usize, GroupCall)>,
    limits: Limits,
    abandoned: &dyn Fn() -> bool,
) -> Vec<(usize, Result<Done, KafkaError>)> {
    let mut pending: Vec<Pending> = calls
        .into_iter()
        .map(|(index, call)| Pending {
            index,
            scope: cluster.scope(call.operation(), limits.per_call),
            call,
            deadline: None,
            again_at: None,
            backoff: FIRST_RETRY,
            last: None,
        })
        .collect();
    let mut done: Vec<(usize, Result<Done, KafkaError>)> = Vec::with_capacity(pending.len());
    let queue = match AdminQueue::new(&session.consumer) {
        Some(queue) => queue,
        None => {
            let error = session
                .scope
                .client("librdkafka could not make a result queue");
            return everyone(pending, &error);
        }
    };
    // Calls not yet sent, by their place in `pending`; calls waiting to be sent again.
    let mut unsent = (0..pending.len()).rev().collect::<Vec<_>>();
    let mut waiting_again: Vec<usize> = Vec::new();
    let mut in_flight = 0_usize;
    let mut served = Instant::now();
    let mut left = pending.len();
    let mut answered = vec![false; pending.len()];
    while left > 0 {
        if abandoned() {
            break;
        }
        if let Some(failure) = session.heard_failure() {
            for (slot, p) in pending.iter().enumerate() {
                if !answered[slot] {
                    done.push((p.index, Err(for_item(&failure, p.scope.operation.clone()))));
                }
            }
            return done;
        }
        let now = Instant::now();
        // Calls due again go first, then new ones, up to the concurrency.
        while in_flight < limits.concurrency {
            let due = waiting_again
                .iter()
                .position(|&slot| pending[slot].again_at.is_some_and(|at| at <= now));
            let slot = match due {
                Some(position) => waiting_again.swap_remove(position),
                None => match unsent.pop() {
                    Some(slot) => slot,
                    None => break,
                },
            };
            let p = &mut pending[slot];
            let deadline = *p.deadline.get_or_insert(now + limits.per_call);
            p.again_at = None;
            let remaining = deadline.saturating_duration_since(now);
            match p.call.send(&queue, slot, remaining.min(LONGEST_REQUEST)) {
                Ok(()) => in_flight += 1,
                Err(detail) => {
                    done.push((p.index, Err(p.scope.client(detail))));
                    answered[slot] = true;
                    left -= 1;
                }
            }
        }
        let next_again = waiting_again
            .iter()
            .filter_map(|&slot| pending[slot].again_at)
            .min();
        let wait = next_again
            .map_or(POLL_STEP, |at| at.saturating_duration_since(now))
            .min(POLL_STEP);
        let answer = if in_flight > 0 {
            queue.poll(wait)
        } else {
            None
        };
        if answer.is_none() && in_flight == 0 {
            std::thread::sleep(wait.max(Duration::from_millis(1)));
        }
        if answer.is_none() || served.elapsed() >= SERVE_EVERY {
            // Without waiting: answers keep arriving on the result queue meanwhile. The
            // session's client has no assignment, so a poll returns no record.
            let _ = session.consumer.poll(Duration::ZERO);
            served = Instant::now();
        }
        let Some((slot, answer)) = answer else {
            continue;
        };
        let Some(p) = pending.get_mut(slot) else {
            continue;
        };
        in_flight -= 1;
        match p.call.read(session, &p.scope, answer) {
            Verdict::Done(result) => {
                done.push((p.index, result));
                answered[slot] = true;
                left -= 1;
            }
            Verdict::Again(error) => {
                let now = Instant::now();
                let deadline = p.deadline.unwrap_or(now);
                if now + p.backoff >= deadline {
                    let error = match error {
                        KafkaError::Timeout { .. } => error,
                        other => p.scope.timeout(Some(format!("last error: {other}"))),
                    };
                    done.push((p.index, Err(error)));
                    answered[slot] = true;
                    left -= 1;
                } else {
                    p.again_at = Some(now + p.backoff);
                    p.backoff = p.backoff.saturating_mul(2);
                    p.last = Some(error);
                    waiting_again.push(slot);
                }
            }
        }
    }
    // Left only when the caller stopped waiting: a timeout nobody reads.
    for (slot, p) in pending.iter().enumerate() {
        if !answered[slot] {
            let note = p.last.as_ref().map(|last| format!("last error: {last}"));
            done.push((p.index, Err(p.scope.timeout(note))));
        }
    }
    done
}

/// `error` for every call of `pending`.
fn everyone(pending: Vec<Pending>, error: &KafkaError) -> Vec<(usize, Result<Done, KafkaError>)> {
    pending
        .into_iter()
        .map(|p| (p.index, Err(for_item(error, p.scope.operation))))
        .collect()
}

/// A failure of the whole batch as one group's answer: the same failure, for that group's
/// operation.
pub(super) fn for_item(error: &KafkaError, operation: Operation) -> KafkaError {
    match error {
        KafkaError::Config { .. } => error.clone(),
        _ => retarget(error.clone(), operation),
    }
}

/// `error`, said of `operation`.
fn retarget(mut error: KafkaError, operation: Operation) -> KafkaError {
    match &mut error {
        KafkaError::Timeout { operation: op, .. }
        | KafkaError::Unsupported { operation: op, .. }
        | KafkaError::Unreachable { operation: op, .. }
        | KafkaError::Authentication { operation: op, .. }
        | KafkaError::NotAuthorized { operation: op, .. }
        | KafkaError::TopicNotFound { operation: op, .. }
        | KafkaError::PartitionNotFound { operation: op, .. }
        | KafkaError::GroupNotEmpty { operation: op, .. }
        | KafkaError::GroupActive { operation: op, .. }
        | KafkaError::Config { operation: op, .. }
        | KafkaError::Client { operation: op, .. } => *op = operation,
    }
    error
}

/// What one admin call came back with.
enum GroupAnswer {
    /// The call failed as a whole (or for its group): the code and librdkafka's words.
    Failed(RDKafkaErrorCode, String),
    /// Each partition the broker answered for.
    Partitions(Vec<PartitionAnswer>),
}

/// One partition of an answer.
struct PartitionAnswer {
    topic: String,
    partition: i32,
    /// The committed offset (negative: none); for a commit, the offset sent.
    offset: i64,
    error: Option<RDKafkaErrorCode>,
}

/// A result queue of our own on a client, where its admin calls answer, each tagged with the
/// caller's number. It cannot outlive the client.
struct AdminQueue<'a> {
    rk: *mut bindings::rd_kafka_t,
    queue: *mut bindings::rd_kafka_queue_t,
    _client: PhantomData<&'a ()>,
}

impl<'a> AdminQueue<'a> {
    fn new(consumer: &'a BaseConsumer<KdrContext>) -> Option<AdminQueue<'a>> {
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is the live handle of `consumer`, which outlives the queue (lifetime
        // 'a). The queue is owned by the returned value and destroyed once, on drop.
        let queue = unsafe { bindings::rd_kafka_queue_new(rk) };
        (!queue.is_null()).then_some(AdminQueue {
            rk,
            queue,
            _client: PhantomData,
        })
    }

    /// Sends ListConsumerGroupOffsets for `group`'s `partitions` (OffsetFetch, stable
    /// offsets required as a read_committed consumer asks them).
    fn list_offsets(
        &self,
        tag: usize,
        group: &str,
        partitions: &TopicPartitionList,
        timeout: Duration,
    ) -> Result<(), String> {
        let group = group_name(group)?;
        let options = self.options(
            bindings::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            tag,
            timeout,
        )?;
        // SAFETY: `group` and `partitions` are live for the call and copied by
        // `_new`; the request object is copied again by the call and ours destroyed right
        // after, on every path. `options` lives until after the call (dropped at the end of
        // this function), and librdkafka copies it into the request.
        unsafe {
            let require_stable =
                bindings::rd_kafka_AdminOptions_set_require_stable_offsets(options.0, 1);
            if !require_stable.is_null() {
                bindings::rd_kafka_error_destroy(require_stable);
            }
            let mut request =
                bindings::rd_kafka_ListConsumerGroupOffsets_new(group.as_ptr(), partitions.ptr());
            if request.is_null() {
                return Err("librdkafka could not make a ListConsumerGroupOffsets request".into());
            }
            bindings::rd_kafka_ListConsumerGroupOffsets(
                self.rk,
                &mut request,
                1,
                options.0,
                self.queue,
            );
            bindings::rd_kafka_ListConsumerGroupOffsets_destroy(request);
        }
        Ok(())
    }

    /// Sends AlterConsumerGroupOffsets: an OffsetCommit for `group` from outside it, which a
    /// broker takes only while the group has no members.
    fn alter_offsets(
        &self,
        tag: usize,
        group: &str,
        offsets: &TopicPartitionList,
        timeout: Duration,
    ) -> Result<(), String> {
        let group = group_name(group)?;
        let options = self.options(
            bindings::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
            tag,
            timeout,
        )?;
        // SAFETY: as in `list_offsets`: every pointer is live for the call, librdkafka copies
        // what it keeps, and our request object is destroyed once, right after the call.
        unsafe {
            let mut request =
                bindings::rd_kafka_AlterConsumerGroupOffsets_new(group.as_ptr(), offsets.ptr());
            if request.is_null() {
                return Err(
                    "librdkafka could not make an AlterConsumerGroupOffsets request".into(),
                );
            }
            bindings::rd_kafka_AlterConsumerGroupOffsets(
                self.rk,
                &mut request,
                1,
                options.0,
                self.queue,
            );
            bindings::rd_kafka_AlterConsumerGroupOffsets_destroy(request);
        }
        Ok(())
    }

    /// Admin options for one call: its tag (returned with its answer) and its timeout, which
    /// librdkafka enforces by answering `__TIMED_OUT` itself.
    fn options(
        &self,
        op: bindings::rd_kafka_admin_op_t,
        tag: usize,
        timeout: Duration,
    ) -> Result<Options, String> {
        let millis = wait_ms(timeout);
        let mut errstr = [0 as std::ffi::c_char; 256];
        // SAFETY: `self.rk` is live; the options are owned by `Options`, destroyed on drop on
        // every path below. `errstr` is a writable buffer of the size given. The opaque is a
        // number, never dereferenced.
        unsafe {
            let options = Options(bindings::rd_kafka_AdminOptions_new(self.rk, op));
            if options.0.is_null() {
                return Err("librdkafka could not make admin options".into());
            }
            bindings::rd_kafka_AdminOptions_set_opaque(options.0, tag as *mut c_void);
            let err = bindings::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                millis,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                let why = CStr::from_ptr(errstr.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                return Err(format!("admin request timeout {millis} ms: {why}"));
            }
            Ok(options)
        }
    }

    /// The next answer, if one comes within `timeout`: the call's tag and what it says.
    fn poll(&self, timeout: Duration) -> Option<(usize, GroupAnswer)> {
        let millis = wait_ms(timeout);
        // SAFETY: the queue is live until drop. The event is destroyed exactly once, after
        // everything read from it was copied out.
        unsafe {
            let event = bindings::rd_kafka_queue_poll(self.queue, millis);
            if event.is_null() {
                return None;
            }
            let answer = read_event(event);
            bindings::rd_kafka_event_destroy(event);
            answer
        }
    }
}

impl Drop for AdminQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed only here. librdkafka keeps its own reference
        // while calls are pending, so calls still in flight answer into a queue nobody polls.
        unsafe { bindings::rd_kafka_queue_destroy(self.queue) };
    }
}

/// Admin options, destroyed on drop.
struct Options(*mut bindings::rd_kafka_AdminOptions_t);

impl Drop for Options {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: made by `rd_kafka_AdminOptions_new` and destroyed only here.
            unsafe { bindings::rd_kafka_AdminOptions_destroy(self.0) };
        }
    }
}

/// A group id for librdkafka.
fn group_name(group: &str) -> Result<CString, String> {
    CString::new(group).map_err(|_| format!("group id {group:?} holds a NUL byte"))
}

/// Copies the answer of one ListConsumerGroupOffsets or AlterConsumerGroupOffsets call out of
/// its event; `None` for any other event.
///
/// # Safety
/// `event` must be a live event; it is only read.
unsafe fn read_event(event: *mut bindings::rd_kafka_event_t) -> Option<(usize, GroupAnswer)> {
    // SAFETY: guaranteed by the caller. The result, its group results and their partition
    // lists belong to the event; strings are NUL-terminated; counts bound the arrays.
    unsafe {
        let kind = bindings::rd_kafka_event_type(event);
        let groups = match kind {
            bindings::RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT => {
                let result = bindings::rd_kafka_event_ListConsumerGroupOffsets_result(event);
                let mut count = 0;
                let groups = if result.is_null() {
                    std::ptr::null_mut()
                } else {
                    bindings::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count)
                };
                (groups, count)
            }
            bindings::RD_KAFKA_EVENT_ALTERCONSUMERGROUPOFFSETS_RESULT => {
                let result = bindings::rd_kafka_event_AlterConsumerGroupOffsets_result(event);
                let mut count = 0;
                let groups = if result.is_null() {
                    std::ptr::null_mut()
                } else {
                    bindings::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count)
                };
                (groups, count)
            }
            _ => return None,
        };
        let tag = bindings::rd_kafka_event_opaque(event) as usize;
        let err = bindings::rd_kafka_event_error(event);
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            let words = text(bindings::rd_kafka_event_error_string(event));
            return Some((tag, GroupAnswer::Failed(err.into(), words)));
        }
        let (groups, count) = groups;
        if groups.is_null() || count == 0 {
            let why = "librdkafka's answer named no group".to_owned();
            return Some((tag, GroupAnswer::Failed(RDKafkaErrorCode::Fail, why)));
        }
        let group = *groups;
        let error = bindings::rd_kafka_group_result_error(group);
        if !error.is_null() {
            let code = bindings::rd_kafka_error_code(error).into();
            let words = text(bindings::rd_kafka_error_string(error));
            return Some((tag, GroupAnswer::Failed(code, words)));
        }
        let list = bindings::rd_kafka_group_result_partitions(group);
        if list.is_null() || (*list).elems.is_null() {
            return Some((tag, GroupAnswer::Partitions(Vec::new())));
        }
        let count = usize::try_from((*list).cnt).unwrap_or(0);
        let partitions = std::slice::from_raw_parts((*list).elems, count)
            .iter()
            .map(|element| PartitionAnswer {
                topic: text(element.topic),
                partition: element.partition,
                offset: element.offset,
                error: (element.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
                    .then(|| element.err.into()),
            })
            .collect();
        Some((tag, GroupAnswer::Partitions(partitions)))
    }
}

/// A librdkafka string, copied; empty for null.
///
/// # Safety
/// `text` must be null or a live NUL-terminated string.
unsafe fn text(text: *const std::ffi::c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(text).to_string_lossy().into_owned() }
}

/// On librdkafka's mock cluster, in this process (the embedded world's clusters): the admin
/// calls are answered there, so the batch never falls back to a client per group.
#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use rdkafka::mocking::MockCluster;

    use super::*;
    use crate::kafka::tests::{live_member, mock_with_prompt_rebalances};
    use crate::kafka::{ClusterRole, ClusterSpec};

    const BOUND: Duration = Duration::from_secs(5);

    fn cluster_at(bootstrap: &str, bound: Duration) -> Cluster {
        Cluster::new(ClusterSpec::new(ClusterRole::Dr, bootstrap), bound).expect("a valid spec")
    }

    fn orders(partitions: i32) -> Vec<TopicPartition> {
        (0..partitions)
            .map(|p| TopicPartition::new("orders", p))
            .collect()
    }

    fn many() -> NonZeroUsize {
        NonZeroUsize::new(4).expect("4")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commits_and_fetches_on_the_mock_match_the_per_group_functions() {
        let mock = MockCluster::new(3).expect("mock cluster");
        mock.create_topic("orders", 3, 1).expect("topic");
        let cluster = cluster_at(&mock.bootstrap_servers(), BOUND);
        // Enough groups for the batch to be spread over two clients (`clients_for`).
        let commits: Vec<GroupCommit> = (0..70_i64)
            .map(|g| GroupCommit {
                group: format!("group-{g}"),
                offsets: orders(3)
                    .into_iter()
                    .take(1 + usize::try_from(g % 3).expect("small"))
                    .map(|tp| (tp, g * 10))
                    .collect(),
            })
            .collect();
        assert_eq!(clients_for(commits.len(), many()), 2);
        let started = Instant::now();
        let committed = cluster.alter_group_offsets(&commits, many()).await;
        eprintln!("70 commits on two clients: {:?}", started.elapsed());
        assert!(committed.iter().all(Result::is_ok), "{committed:?}");

        let mut asks: Vec<GroupPartitions> = commits
            .iter()
            .map(|c| GroupPartitions {
                group: c.group.clone(),
                partitions: orders(3),
            })
            .collect();
        asks.push(GroupPartitions {
            group: "never-committed".to_owned(),
            partitions: orders(2),
        });
        asks.push(GroupPartitions {
            group: "nothing-asked".to_owned(),
            partitions: Vec::new(),
        });
        let fetched = cluster.fetch_group_offsets(&asks, many()).await;
        for (ask, fetched) in asks.iter().zip(fetched) {
            let one = cluster
                .committed_offsets(&ask.group, &ask.partitions)
                .await
                .expect("per group");
            assert_eq!(fetched.expect("batched"), one, "{}", ask.group);
        }
        let one = cluster
            .committed_offsets("group-2", &orders(3))
            .await
            .expect("per group");
        assert_eq!(
            one,
            vec![
                (orders(3)[0].clone(), Some(20)),
                (orders(3)[1].clone(), Some(20)),
                (orders(3)[2].clone(), Some(20)),
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_commit_to_a_group_with_a_live_member_is_refused_as_active_on_its_own() {
        let holder = mock_with_prompt_rebalances();
        let mock = holder.client().mock_cluster().expect("mock cluster");
        mock.create_topic("orders", 2, 1).expect("topic");
        let bootstrap = mock.bootstrap_servers();
        let _member = live_member(&bootstrap, "live", "orders");

        let cluster = cluster_at(&bootstrap, BOUND);
        let commits = [
            GroupCommit {
                group: "live".to_owned(),
                offsets: vec![(orders(1)[0].clone(), 1)],
            },
            GroupCommit {
                group: "idle".to_owned(),
                offsets: vec![(orders(1)[0].clone(), 1)],
            },
        ];
        let answers = cluster.alter_group_offsets(&commits, many()).await;
        assert!(
            matches!(&answers[0], Err(KafkaError::GroupActive { group, .. }) if group == "live"),
            "{answers:?}"
        );
        assert!(
            answers[0]
                .as_ref()
                .is_err_and(|e| e.to_string().starts_with(
                    "commit offsets of group live on the dr cluster: group live has active members"
                ))
        );
        assert!(answers[1].is_ok(), "{answers:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn negative_and_empty_commits_are_answered_without_asking() {
        // Nothing listens here: any call that asked would fail.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let cluster = cluster_at(&address, BOUND);
        let commits = [
            GroupCommit {
                group: "bad".to_owned(),
                offsets: vec![(orders(1)[0].clone(), -1)],
            },
            GroupCommit {
                group: "empty".to_owned(),
                offsets: Vec::new(),
            },
        ];
        let answers = cluster.alter_group_offsets(&commits, many()).await;
        assert_eq!(
            answers[0].as_ref().map_err(ToString::to_string),
            Err("commit offsets of group bad on the dr cluster: offset -1 for partition orders-0 is negative".to_owned())
        );
        assert_eq!(answers[1], Ok(()));
    }

    /// A cluster that refuses connections fails every group of the batch at once, each
    /// naming its own group, well within one operation's bound.
    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_cluster_fails_every_group_within_one_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        drop(listener);
        let bound = Duration::from_secs(2);
        let cluster = cluster_at(&address, bound);
        let asks: Vec<GroupPartitions> = (0..40)
            .map(|g| GroupPartitions {
                group: format!("g{g}"),
                partitions: orders(2),
            })
            .collect();
        let started = Instant::now();
        let answers = cluster.fetch_group_offsets(&asks, NonZeroUsize::MIN).await;
        let took = started.elapsed();
        eprintln!("40 groups on a refused cluster: {took:?}");
        assert!(took < bound + Duration::from_secs(1), "{took:?}");
        for (ask, answer) in asks.iter().zip(&answers) {
            let error = answer.as_ref().expect_err("unreachable");
            assert!(
                matches!(
                    error,
                    KafkaError::Unreachable { .. } | KafkaError::Timeout { .. }
                ),
                "{error:?}"
            );
            assert_eq!(
                error.operation(),
                &Operation::FetchCommittedOffsets {
                    group: ask.group.clone()
                }
            );
        }
    }
}
