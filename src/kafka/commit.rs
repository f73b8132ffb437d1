//! An offset commit whose answer can be waited for with a bound.
//!
//! rdkafka offers two manual commits and neither fits: a synchronous commit waits in
//! librdkafka without a timeout (for as long as the coordinator takes to appear), and an
//! asynchronous one never hands its answer back (librdkafka only reports manual commits to
//! a reply queue or a configured callback, and rdkafka sets neither). librdkafka's
//! `rd_kafka_commit_queue` sends the answer to a queue of our own, which we can poll with
//! a timeout, between checks for authentication failures and the deadline.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::bindings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;

/// What an offset commit came back with: a request-level error, or per-partition outcomes.
pub(crate) type CommitOutcome = Result<Vec<PartitionCommit>, RDKafkaErrorCode>;

/// One partition's commit result.
#[derive(Debug, Clone)]
pub(crate) struct PartitionCommit {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) error: Option<RDKafkaErrorCode>,
}

/// A commit in flight; cannot outlive the consumer that sent it.
pub(crate) struct PendingCommit<'a> {
    queue: *mut bindings::rd_kafka_queue_t,
    _consumer: PhantomData<&'a ()>,
}

impl<'a> PendingCommit<'a> {
    /// Sends the commit of `offsets` for the consumer's group.
    pub(crate) fn send<C: ConsumerContext>(
        consumer: &'a BaseConsumer<C>,
        offsets: &TopicPartitionList,
    ) -> Result<PendingCommit<'a>, RDKafkaErrorCode> {
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is the live handle of `consumer`, which outlives the returned value
        // (lifetime 'a). The new queue is owned by `PendingCommit` and destroyed on drop;
        // librdkafka keeps its own reference while a reply is pending, so destroying ours
        // early is allowed. `offsets` is copied by librdkafka before this returns.
        unsafe {
            let queue = bindings::rd_kafka_queue_new(rk);
            if queue.is_null() {
                return Err(RDKafkaErrorCode::Fail);
            }
            let pending = PendingCommit {
                queue,
                _consumer: PhantomData,
            };
            let err = bindings::rd_kafka_commit_queue(
                rk,
                offsets.ptr(),
                queue,
                None,
                std::ptr::null_mut(),
            );
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(err.into());
            }
            Ok(pending)
        }
    }

    /// The answer, if it arrives within `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<CommitOutcome> {
        let millis = super::bound::wait_ms(timeout);
        // SAFETY: `self.queue` is alive until drop, and the client with it. The event is
        // destroyed exactly once below, after everything borrowed from it was copied.
        unsafe {
            let event = bindings::rd_kafka_queue_poll(self.queue, millis);
            if event.is_null() {
                return None;
            }
            let outcome =
                if bindings::rd_kafka_event_type(event) == bindings::RD_KAFKA_EVENT_OFFSET_COMMIT {
                    Some(read_outcome(event))
                } else {
                    None
                };
            bindings::rd_kafka_event_destroy(event);
            outcome
        }
    }
}

/// Copies a commit result out of its event.
///
/// # Safety
/// `event` must be a live `RD_KAFKA_EVENT_OFFSET_COMMIT` event.
unsafe fn read_outcome(event: *mut bindings::rd_kafka_event_t) -> CommitOutcome {
    // SAFETY: guaranteed by the caller; the partition list belongs to the event and each
    // element's topic is a NUL-terminated string.
    unsafe {
        let err = bindings::rd_kafka_event_error(event);
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(err.into());
        }
        let list = bindings::rd_kafka_event_topic_partition_list(event);
        if list.is_null() || (*list).elems.is_null() {
            return Ok(Vec::new());
        }
        let count = usize::try_from((*list).cnt).unwrap_or(0);
        Ok(std::slice::from_raw_parts((*list).elems, count)
            .iter()
            .map(|element| PartitionCommit {
                topic: if element.topic.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(element.topic).to_string_lossy().into_owned()
                },
                partition: element.partition,
                error: (element.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
                    .then(|| element.err.into()),
            })
            .collect())
    }
}

impl Drop for PendingCommit<'_> {
    fn drop(&mut self) {
        // SAFETY: the queue was created in `send` and is destroyed only here.
        unsafe { bindings::rd_kafka_queue_destroy(self.queue) };
    }
}
