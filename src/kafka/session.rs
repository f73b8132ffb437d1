//! One operation's client and deadline, on a blocking thread: the synchronous side of
//! every [`Cluster`](super::Cluster) call.
//!
//! A session owns a fresh consumer (never joined to a group) and retries librdkafka's
//! calls in growing slices until they succeed, fail for good, or its deadline passes,
//! hearing meanwhile what librdkafka only reports as events (refused handshakes, every
//! broker down).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::groups::{GroupInfo, GroupList};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::assignment::decode_consumer_assignment;
use super::bound::wait;
use super::commit::{CommitOutcome, PendingCommit};
use super::context::KdrContext;
use super::error::KafkaError;
use super::scope::{Scope, about_partition, error_code, group_is_active, retriable};
use super::types::{
    BrokerInfo, ClusterInfo, GroupDescription, MemberInfo, PartitionRead, PartitionScan, RawRecord,
    TopicInfo, TopicPartition,
};

/// The first librdkafka wait in a retried call. Waits double from here, so a slow cluster
/// still gets a long enough single wait, while a refused connection or a failed handshake
/// (reported as events, between waits) is noticed within this much time.
const FIRST_SLICE: Duration = Duration::from_millis(200);

/// How long one consumer poll may block while reading or waiting for a commit.
pub(crate) const POLL_STEP: Duration = Duration::from_millis(50);

/// Partitions per librdkafka ListOffsets call (see [`Session::offsets_in_chunks`]).
/// Measured on librdkafka's mock cluster, 20 000 partitions' end offsets took 17.3 s in one
/// call, 0.23 s in calls of 100, 0.50 s in calls of 250 and 1.76 s in calls of 1 000.
const OFFSETS_PER_CALL: usize = 128;

/// ListOffsets calls in flight at once in one session.
const CALLS_AT_ONCE: usize = 4;

/// The one topic a reachability probe asks metadata for. A request for every topic grows
/// with the estate (seconds at 20 000 partitions, once past the probe's bound: a healthy
/// cluster called unreachable), a request for one topic does not, and its answer names the
/// brokers, the cluster id and the controller all the same. It is kdr's own authority topic,
/// asked with auto-creation off (see `Cluster::meta_config`), so asking never creates it;
/// whether it exists, or may be described, does not matter to the probe.
pub(crate) const PROBE_TOPIC: &str = "__kdr_authority";

/// Each asked partition's earliest and latest offsets, or why it has none.
type EachBoth = (Vec<Result<i64, KafkaError>>, Vec<Result<i64, KafkaError>>);

/// Each answered partition's offset, or librdkafka's error for it.
type Answered = HashMap<(String, i32), Result<Offset, RdKafkaError>>;

/// One operation's client and deadline, on a blocking thread.
pub(crate) struct Session {
    pub(super) consumer: BaseConsumer<KdrContext>,
    pub(super) scope: Scope,
    deadline: Instant,
    /// Every topic, from the session's first full metadata request.
    topics: OnceLock<Vec<TopicInfo>>,
}

impl Session {
    pub(crate) fn open(
        config: &ClientConfig,
        scope: Scope,
        deadline: Instant,
    ) -> Result<Session, KafkaError> {
        let context = KdrContext::new(scope.cluster, scope.redactor.clone());
        let consumer = config
            .create_with_context::<_, BaseConsumer<KdrContext>>(context)
            .map_err(|error| scope.config_error(&error))?;
        Ok(Session {
            consumer,
            scope,
            deadline,
            topics: OnceLock::new(),
        })
    }

    pub(crate) fn context(&self) -> &KdrContext {
        self.consumer.client().context()
    }

    pub(crate) fn remaining(&self) -> Option<Duration> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        (!remaining.is_zero()).then_some(remaining)
    }

    /// The most specific error heard: a client error event, else a logged failure, else
    /// the last failed attempt.
    pub(crate) fn last_error(&self, attempt: Option<String>) -> Option<String> {
        let heard = self.context().heard();
        heard
            .last_error
            .clone()
            .or_else(|| heard.last_logged_failure.clone())
            .or(attempt)
    }

    pub(crate) fn timed_out(&self, attempt: Option<String>) -> KafkaError {
        self.scope.timeout(
            self.last_error(attempt)
                .map(|last| format!("last error: {last}")),
        )
    }

    /// Lets librdkafka deliver queued events (errors, logs) to the context. Only for
    /// clients with no assignment: a poll could otherwise return a record.
    pub(crate) fn serve_events(&self) {
        for _ in 0..8 {
            let _ = self.consumer.poll(Duration::from_millis(1));
        }
    }

    /// A failure the client heard about that no retry will fix within this operation.
    pub(crate) fn heard_failure(&self) -> Option<KafkaError> {
        let (authentication, all_down) = {
            let heard = self.context().heard();
            (heard.authentication.clone(), heard.unreachable())
        };
        if let Some(detail) = authentication {
            return Some(KafkaError::Authentication {
                cluster: self.scope.cluster,
                operation: self.scope.operation.clone(),
                detail,
            });
        }
        all_down.then(|| KafkaError::Unreachable {
            cluster: self.scope.cluster,
            operation: self.scope.operation.clone(),
            detail: self
                .last_error(None)
                .unwrap_or_else(|| "all broker connections are down".to_owned()),
        })
    }

    /// Calls `attempt` with growing waits until it succeeds, fails for good, or the
    /// deadline passes. `special` may give a better error for a code than the generic one.
    pub(crate) fn sliced<T>(
        &self,
        mut attempt: impl FnMut(Duration) -> Result<T, RdKafkaError>,
        special: impl Fn(RDKafkaErrorCode) -> Option<KafkaError>,
    ) -> Result<T, KafkaError> {
        let mut slice = FIRST_SLICE;
        let mut last_attempt = None;
        loop {
            let Some(remaining) = self.remaining() else {
                return Err(self.timed_out(last_attempt));
            };
            let error = match attempt(wait(slice.min(remaining))) {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            self.serve_events();
            if let Some(failure) = self.heard_failure() {
                return Err(failure);
            }
            match error_code(&error) {
                Some(code) if retriable(code) => last_attempt = Some(code.to_string()),
                Some(code) => {
                    return Err(special(code)
                        .unwrap_or_else(|| self.scope.fail(&error, self.last_error(None))));
                }
                None => return Err(self.scope.fail(&error, None)),
            }
            slice = slice.saturating_mul(2);
        }
    }

    /// The brokers and the cluster's identity from a metadata request for [`PROBE_TOPIC`]
    /// alone: it costs the same however many partitions the cluster holds.
    pub(crate) fn cluster_info(&self) -> Result<ClusterInfo, KafkaError> {
        let metadata = self.sliced(
            |wait| self.consumer.fetch_metadata(Some(PROBE_TOPIC), wait),
            |_| None,
        )?;
        let mut brokers: Vec<BrokerInfo> = metadata
            .brokers()
            .iter()
            .map(|broker| BrokerInfo {
                id: broker.id(),
                host: broker.host().to_owned(),
                port: broker.port(),
            })
            .collect();
        brokers.sort_by_key(|broker| broker.id);
        let (cluster_id, controller_id) = cached_identity(self.consumer.client());
        Ok(ClusterInfo {
            brokers,
            answered_by: metadata.orig_broker_id(),
            cluster_id,
            controller_id,
            round_trip: Duration::ZERO,
        })
    }

    /// Every topic, sorted. Asked once per session: the request also fills librdkafka's
    /// metadata cache, so partition leaders are known before any ListOffsets.
    pub(crate) fn all_topics(&self) -> Result<&[TopicInfo], KafkaError> {
        if let Some(topics) = self.topics.get() {
            return Ok(topics);
        }
        let metadata = self.sliced(|wait| self.consumer.fetch_metadata(None, wait), |_| None)?;
        Ok(self.topics.get_or_init(|| topics_of(&metadata)))
    }

    /// What this session must know of the topics of `asked` before a ListOffsets: which
    /// partitions exist (kdr's check) and their leaders (librdkafka's cache, filled by the
    /// same request). Partitions of one topic (a partition read, an internal topic) ask that
    /// topic alone, at the same cost on any size of cluster; more topics ask every topic,
    /// once per session.
    fn topics_for(&self, asked: &[TopicPartition]) -> Result<Cow<'_, [TopicInfo]>, KafkaError> {
        if let Some(topics) = self.topics.get() {
            return Ok(Cow::Borrowed(topics));
        }
        match asked.split_first() {
            Some((first, rest)) if rest.iter().all(|tp| tp.topic == first.topic) => {
                self.one_topic(&first.topic).map(Cow::Owned)
            }
            _ => self.all_topics().map(Cow::Borrowed),
        }
    }

    /// One topic's partitions from a metadata request for it alone; none when the cluster
    /// does not have it. A transient error of the topic (its leaders not elected yet) asks
    /// again; any other (not authorised to describe it) is the error.
    fn one_topic(&self, name: &str) -> Result<Vec<TopicInfo>, KafkaError> {
        let metadata = self.sliced(
            |wait| {
                let metadata = self.consumer.fetch_metadata(Some(name), wait)?;
                match topic_error(&metadata) {
                    Some(code) if code != RDKafkaErrorCode::UnknownTopicOrPartition => {
                        Err(RdKafkaError::MetadataFetch(code))
                    }
                    _ => Ok(metadata),
                }
            },
            |_| None,
        )?;
        Ok(topics_of(&metadata))
    }

    pub(crate) fn unknown_partition(
        &self,
        code: RDKafkaErrorCode,
        asked: &[TopicPartition],
    ) -> Option<KafkaError> {
        use RDKafkaErrorCode as C;
        if !matches!(
            code,
            C::UnknownPartition | C::UnknownTopic | C::UnknownTopicOrPartition
        ) {
            return None;
        }
        // The topic may have gone since this session's metadata: look again.
        let metadata = self
            .consumer
            .fetch_metadata(None, wait(self.remaining()?))
            .ok()?;
        missing_partition(&self.scope, &topics_of(&metadata), asked)
    }

    /// [`Session::list_offsets_each`] at the earliest and at the latest offsets, both
    /// rounds at once (the metadata is read first, once, for both).
    pub(crate) fn list_offsets_both(
        &self,
        asked: &[TopicPartition],
    ) -> Result<EachBoth, KafkaError> {
        let topics = self.topics_for(asked)?;
        let (low, high) = std::thread::scope(|threads| {
            let low = threads.spawn(|| self.offsets_at(&topics, asked, Offset::Beginning));
            let high = self.offsets_at(&topics, asked, Offset::End);
            (low.join(), high)
        });
        let low = low.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((low?, high?))
    }

    /// ListOffsets at `at` for every asked partition, one request per leader, with each
    /// partition's own answer: a partition the cluster does not have (per this session's
    /// metadata) or one the broker refuses for good is an error in its slot, never a
    /// failure of the whole call. A transient partition error (leader moved) retries the
    /// request.
    pub(crate) fn list_offsets_each(
        &self,
        asked: &[TopicPartition],
        at: Offset,
    ) -> Result<Vec<Result<i64, KafkaError>>, KafkaError> {
        let topics = self.topics_for(asked)?;
        self.offsets_at(&topics, asked, at)
    }

    /// [`Session::list_offsets_each`] against `topics`, what this session knows exists.
    fn offsets_at(
        &self,
        topics: &[TopicInfo],
        asked: &[TopicPartition],
        at: Offset,
    ) -> Result<Vec<Result<i64, KafkaError>>, KafkaError> {
        let index = TopicIndex::new(topics);
        let mut answers: Vec<Option<Result<i64, KafkaError>>> = asked
            .iter()
            .map(|tp| index.missing(&self.scope, tp).map(Err))
            .collect();
        let mut requested = HashSet::with_capacity(asked.len());
        let request: Vec<&TopicPartition> = asked
            .iter()
            .zip(&answers)
            .filter(|(tp, answer)| answer.is_none() && requested.insert(*tp))
            .map(|(tp, _)| tp)
            .collect();
        if request.is_empty() {
            return Ok(answers.into_iter().flatten().collect());
        }
        let found = self.offsets_in_chunks(&request, at)?;
        for (tp, answer) in asked.iter().zip(&mut answers) {
            if answer.is_none() {
                *answer = Some(self.offset_in(tp, found.get(&(tp.topic.clone(), tp.partition))));
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// ListOffsets for `request` in calls of [`OFFSETS_PER_CALL`] partitions, up to
    /// [`CALLS_AT_ONCE`] of them in flight: librdkafka matches each answer to its request
    /// by a linear search per partition, so one call for 20 000 partitions spends seconds
    /// there, while calls of a hundred-odd partitions keep that cost linear overall and
    /// the calls in flight together hide the extra round trips.
    fn offsets_in_chunks(
        &self,
        request: &[&TopicPartition],
        at: Offset,
    ) -> Result<Answered, KafkaError> {
        let chunks: Vec<&[&TopicPartition]> = request.chunks(OFFSETS_PER_CALL).collect();
        let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
        let worker = || -> Result<Answered, KafkaError> {
            let mut found = HashMap::new();
            while let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let answer = self.offsets_once(chunk, at).inspect_err(|_| {
                    failed.store(true, Ordering::Relaxed);
                })?;
                found.extend(offsets_by_partition(&answer));
            }
            Ok(found)
        };
        let answers: Vec<_> = std::thread::scope(|threads| {
            let workers: Vec<_> = (0..CALLS_AT_ONCE.min(chunks.len()))
                .map(|_| threads.spawn(worker))
                .collect();
            workers.into_iter().map(|w| w.join()).collect()
        });
        let mut found = HashMap::with_capacity(request.len());
        for answer in answers {
            match answer {
                Ok(answer) => found.extend(answer?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(found)
    }

    /// One ListOffsets call, retried while a partition's error is transient (leader moved).
    fn offsets_once(
        &self,
        chunk: &[&TopicPartition],
        at: Offset,
    ) -> Result<TopicPartitionList, KafkaError> {
        let mut request = TopicPartitionList::with_capacity(chunk.len());
        for tp in chunk {
            request
                .add_partition_offset(&tp.topic, tp.partition, at)
                .map_err(|error| self.scope.fail(&error, None))?;
        }
        self.sliced(
            |wait| {
                let answer = self.consumer.offsets_for_times(request.clone(), wait)?;
                for element in answer.elements() {
                    match element.error() {
                        Err(error) if error_code(&error).is_some_and(retriable) => {
                            return Err(error);
                        }
                        _ => {}
                    }
                }
                Ok(answer)
            },
            |_| None,
        )
    }

    /// One partition's offset from a ListOffsets answer, or why there is none.
    fn offset_in(
        &self,
        tp: &TopicPartition,
        found: Option<&Result<Offset, RdKafkaError>>,
    ) -> Result<i64, KafkaError> {
        match found {
            Some(Ok(Offset::Offset(offset))) => Ok(*offset),
            Some(Err(error)) => Err(match error_code(error) {
                // The topic went after this session's metadata was read.
                Some(
                    RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition,
                ) => self.scope.topic_not_found(&tp.topic),
                _ => about_partition(self.scope.fail(error, None), tp),
            }),
            other => Err(self
                .scope
                .client(format!("the cluster gave no offset for {tp} ({other:?})"))),
        }
    }

    pub(crate) fn read_partition(
        &self,
        tp: &TopicPartition,
        allow_partial: bool,
    ) -> Result<PartitionRead, KafkaError> {
        let mut records = Vec::new();
        let scan = self.scan_partition(tp, allow_partial, &mut |message, high| {
            if records.is_empty() {
                let expected = usize::try_from(high - message.offset()).unwrap_or(0);
                records.reserve(expected.min(1 << 16));
            }
            records.push(raw_record(message));
        })?;
        Ok(PartitionRead {
            records,
            low: scan.low,
            high: scan.high,
            complete: scan.complete,
        })
    }

    /// Hands every record from the log start to the end captured at the start to `sink`, in
    /// offset order, without keeping any.
    pub(crate) fn scan_partition(
        &self,
        tp: &TopicPartition,
        allow_partial: bool,
        sink: &mut dyn FnMut(&BorrowedMessage<'_>, i64),
    ) -> Result<PartitionScan, KafkaError> {
        let (low, high) = self.list_offsets_both(std::slice::from_ref(tp))?;
        let no_offset = || {
            Err(self
                .scope
                .client(format!("the cluster gave no offset for {tp}")))
        };
        let (low, high) = (
            low.into_iter().next().unwrap_or_else(no_offset)?,
            high.into_iter().next().unwrap_or_else(no_offset)?,
        );
        if low >= high {
            return Ok(PartitionScan {
                records: 0,
                low,
                high,
                complete: true,
            });
        }

        let mut assignment = TopicPartitionList::with_capacity(1);
        assignment
            .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(low))
            .and_then(|()| self.consumer.assign(&assignment))
            .map_err(|error| self.scope.fail(&error, None))?;
        let mut records = 0_u64;
        let mut next = low;
        let mut last_attempt = None;
        while next < high {
            let Some(remaining) = self.remaining() else {
                break;
            };
            match self.consumer.poll(remaining.min(POLL_STEP)) {
                None => {}
                Some(Ok(message)) => {
                    if message.offset() >= high {
                        next = high;
                    } else {
                        next = message.offset() + 1;
                        records += 1;
                        sink(&message, high);
                    }
                }
                // At the end of the readable log: the captured end, or the last stable
                // offset if a transaction is open (what lies past it is not readable yet).
                Some(Err(RdKafkaError::PartitionEOF(_))) => next = high,
                Some(Err(error)) => match error_code(&error) {
                    Some(code) if retriable(code) => last_attempt = Some(code.to_string()),
                    _ => return Err(self.scope.fail(&error, self.last_error(None))),
                },
            }
            if let Some(failure) = self.heard_failure() {
                return Err(failure);
            }
        }
        let complete = next >= high;
        if complete || allow_partial {
            return Ok(PartitionScan {
                records,
                low,
                high,
                complete,
            });
        }
        let mut note = format!("read {records} record(s), up to offset {next} of {high}");
        if let Some(last) = self.last_error(last_attempt) {
            note.push_str(&format!("; last error: {last}"));
        }
        Err(self.scope.timeout(Some(note)))
    }

    pub(crate) fn committed(
        &self,
        asked: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, KafkaError> {
        let mut request = TopicPartitionList::with_capacity(asked.len());
        for tp in asked {
            request.add_partition(&tp.topic, tp.partition);
        }
        let answer = self.sliced(
            |wait| {
                let answer = self.consumer.committed_offsets(request.clone(), wait)?;
                for element in answer.elements() {
                    element.error()?;
                }
                Ok(answer)
            },
            |code| self.unknown_partition(code, asked),
        )?;
        Ok(asked
            .iter()
            .map(|tp| {
                let offset = match answer
                    .find_partition(&tp.topic, tp.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                };
                (tp.clone(), offset)
            })
            .collect())
    }

    /// Sends the commit and waits for the broker's answer on a queue of its own, in
    /// short polls, so the deadline and authentication failures are noticed meanwhile.
    pub(crate) fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, i64)],
    ) -> Result<(), KafkaError> {
        let mut request = TopicPartitionList::with_capacity(offsets.len());
        for (tp, offset) in offsets {
            request
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                .map_err(|error| self.scope.fail(&error, None))?;
        }
        let pending = PendingCommit::send(&self.consumer, &request)
            .map_err(|code| self.scope.error_for_code(code, None))?;
        loop {
            let Some(remaining) = self.remaining() else {
                return Err(self.timed_out(None));
            };
            if let Some(outcome) = pending.wait(remaining.min(POLL_STEP)) {
                return self.commit_verdict(group, outcome);
            }
            self.serve_events();
            if let Some(failure) = self.heard_failure() {
                return Err(failure);
            }
        }
    }

    pub(crate) fn commit_verdict(
        &self,
        group: &str,
        outcome: CommitOutcome,
    ) -> Result<(), KafkaError> {
        let (code, partition) = match outcome {
            Err(code) => (code, None),
            Ok(partitions) => match partitions
                .into_iter()
                .find_map(|p| p.error.map(|code| (code, p)))
            {
                None => return Ok(()),
                Some((code, p)) => (code, Some(TopicPartition::new(p.topic, p.partition))),
            },
        };
        if group_is_active(code) {
            return Err(KafkaError::GroupActive {
                cluster: self.scope.cluster,
                operation: self.scope.operation.clone(),
                group: group.to_owned(),
                detail: code.to_string(),
            });
        }
        let error = self.scope.error_for_code(code, self.last_error(None));
        match partition {
            Some(tp) => Err(about_partition(error, &tp)),
            None => Err(error),
        }
    }

    pub(crate) fn describe_group(&self, group: &str) -> Result<GroupDescription, KafkaError> {
        let groups = self.list_groups(Some(group))?;
        let info = groups.groups().iter().find(|info| info.name() == group);
        Ok(description(group, info))
    }

    /// Every asked group's description, in the order asked, from one listing of the
    /// cluster's groups: librdkafka sends ListGroups to each broker, then one
    /// DescribeGroups per broker for all its groups. A group the cluster does not know is
    /// `Dead`, as [`Session::describe_group`] says for it.
    pub(crate) fn describe_groups(
        &self,
        asked: &[String],
    ) -> Result<Vec<GroupDescription>, KafkaError> {
        let groups = self.list_groups(None)?;
        let by_name: HashMap<&str, &GroupInfo> = groups
            .groups()
            .iter()
            .map(|info| (info.name(), info))
            .collect();
        Ok(asked
            .iter()
            .map(|group| description(group, by_name.get(group.as_str()).copied()))
            .collect())
    }

    /// The name of every group the cluster knows, from one listing.
    pub(crate) fn group_names(&self) -> Result<Vec<String>, KafkaError> {
        let groups = self.list_groups(None)?;
        let mut names: Vec<String> = groups
            .groups()
            .iter()
            .map(|info| info.name().to_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// ListGroups/DescribeGroups for one group, or every group with `None`.
    fn list_groups(&self, group: Option<&str>) -> Result<GroupList, KafkaError> {
        self.sliced(
            |wait| self.consumer.fetch_group_list(group, wait),
            |code| {
                (code == RDKafkaErrorCode::UnsupportedFeature).then(|| KafkaError::Unsupported {
                    cluster: self.scope.cluster,
                    operation: self.scope.operation.clone(),
                    detail: "the brokers refuse group listing (ListGroups/DescribeGroups)"
                        .to_owned(),
                })
            },
        )
    }
}

/// A group as the coordinator described it; `Dead` when it was not in the answer.
fn description(group: &str, info: Option<&GroupInfo>) -> GroupDescription {
    let Some(info) = info else {
        return GroupDescription {
            group: group.to_owned(),
            state: "Dead".to_owned(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
    };
    let consumer_protocol = info.protocol_type() == "consumer";
    let members = info
        .members()
        .iter()
        .map(|member| MemberInfo {
            id: member.id().to_owned(),
            client_id: member.client_id().to_owned(),
            host: member.client_host().to_owned(),
            assignment: consumer_protocol
                .then(|| member.assignment().and_then(decode_consumer_assignment))
                .flatten(),
        })
        .collect();
    GroupDescription {
        group: group.to_owned(),
        state: info.state().to_owned(),
        protocol_type: info.protocol_type().to_owned(),
        protocol: info.protocol().to_owned(),
        members,
    }
}

/// The error of the first topic in the metadata that has one.
fn topic_error(metadata: &Metadata) -> Option<RDKafkaErrorCode> {
    metadata
        .topics()
        .iter()
        .find_map(|topic| topic.error())
        .map(RDKafkaErrorCode::from)
}

/// Every topic in the metadata with its partitions, both sorted; a topic the answer says
/// does not exist (asked by name) is left out.
fn topics_of(metadata: &Metadata) -> Vec<TopicInfo> {
    let mut topics: Vec<TopicInfo> = metadata
        .topics()
        .iter()
        .filter(|topic| {
            topic.error().map(RDKafkaErrorCode::from)
                != Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        })
        .map(|topic| {
            let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            TopicInfo {
                name: topic.name().to_owned(),
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics
}

/// The error for the first asked partition missing from `topics`, if any.
fn missing_partition(
    scope: &Scope,
    topics: &[TopicInfo],
    asked: &[TopicPartition],
) -> Option<KafkaError> {
    let index = TopicIndex::new(topics);
    asked.iter().find_map(|tp| index.missing(scope, tp))
}

/// Topics by name, so that checking many partitions against the metadata takes time in
/// proportion to the partitions asked, not to partitions times topics.
pub(crate) struct TopicIndex<'a>(HashMap<&'a str, &'a TopicInfo>);

impl<'a> TopicIndex<'a> {
    pub(crate) fn new(topics: &'a [TopicInfo]) -> Self {
        TopicIndex(topics.iter().map(|t| (t.name.as_str(), t)).collect())
    }

    /// `TopicNotFound` or `PartitionNotFound` when the cluster does not have `tp`.
    pub(crate) fn missing(&self, scope: &Scope, tp: &TopicPartition) -> Option<KafkaError> {
        match self.0.get(tp.topic.as_str()) {
            None => Some(scope.topic_not_found(&tp.topic)),
            // Partition numbers are sorted (see `topics_of`).
            Some(topic) if topic.partitions.binary_search(&tp.partition).is_err() => {
                Some(KafkaError::PartitionNotFound {
                    cluster: scope.cluster,
                    operation: scope.operation.clone(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    partition_count: topic.partitions.len(),
                })
            }
            Some(_) => None,
        }
    }
}

/// Each answered partition's offset or error, by topic and partition: one pass over the
/// answer, where looking each asked partition up in it would be linear per lookup.
pub(crate) fn offsets_by_partition(answer: &TopicPartitionList) -> Answered {
    answer
        .elements()
        .iter()
        .map(|element| {
            let key = (element.topic().to_owned(), element.partition());
            (key, element.error().map(|()| element.offset()))
        })
        .collect()
}

pub(super) fn raw_record(message: &impl Message) -> RawRecord {
    RawRecord {
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Cluster id and controller id from the client's metadata cache, after a metadata
/// request has filled it. rdkafka wraps neither call without leaking or at all.
fn cached_identity<C: ClientContext>(client: &Client<C>) -> (Option<String>, Option<i32>) {
    use rdkafka::bindings;

    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client handle for the whole call (borrowed from `client`).
    // With a 0 ms timeout both functions only read the metadata cache. `rd_kafka_clusterid`
    // returns a copy (or null) that the caller owns and frees with `rd_kafka_mem_free`.
    unsafe {
        let id = bindings::rd_kafka_clusterid(rk, 0);
        let cluster_id = if id.is_null() {
            None
        } else {
            let text = CStr::from_ptr(id).to_string_lossy().into_owned();
            bindings::rd_kafka_mem_free(rk, id.cast());
            Some(text)
        };
        let controller = bindings::rd_kafka_controllerid(rk, 0);
        (cluster_id, (controller >= 0).then_some(controller))
    }
}
