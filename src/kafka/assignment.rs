//! Decoding a member's assignment from DescribeGroups.
//!
//! librdkafka hands back the raw `ConsumerProtocolAssignment` bytes. Knowing which
//! partitions a live member holds lets a refusal say *what* is still being consumed, which
//! is what an operator needs to find the process that was not stopped.

use super::types::TopicPartition;

/// Decodes a `ConsumerProtocolAssignment` (versions 0–3 share this layout): an `int16`
/// version, then an array of `(string topic, array of int32 partition)`, then user data,
/// which is ignored. `None` when the bytes are not in that shape.
pub(crate) fn decode_consumer_assignment(bytes: &[u8]) -> Option<Vec<TopicPartition>> {
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    if version < 0 {
        return None;
    }
    let topic_count = reader.array_len()?;
    let mut assignment = Vec::new();
    for _ in 0..topic_count {
        let topic = reader.string()?;
        let partition_count = reader.array_len()?;
        for _ in 0..partition_count {
            assignment.push(TopicPartition {
                topic: topic.clone(),
                partition: reader.i32()?,
            });
        }
    }
    assignment.sort();
    Some(assignment)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }

    /// An array length; a null array (-1) reads as empty. Rejects lengths the remaining
    /// bytes cannot hold, so garbage cannot make us allocate or loop for long.
    fn array_len(&mut self) -> Option<usize> {
        let len = self.i32()?;
        if len < 0 {
            return Some(0);
        }
        let len = usize::try_from(len).ok()?;
        (len <= self.bytes.len()).then_some(len)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        if len > self.bytes.len() {
            return None;
        }
        let (text, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        String::from_utf8(text.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: &[u8]) -> Vec<u8> {
        let mut bytes = version.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            bytes.extend((topic.len() as i16).to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend((user_data.len() as i32).to_be_bytes());
        bytes.extend(user_data);
        bytes
    }

    #[test]
    fn decodes_topics_and_partitions_in_order() {
        let bytes = encode(1, &[("orders", &[2, 0]), ("billing", &[1])], b"sticky");
        let decoded = decode_consumer_assignment(&bytes).expect("valid assignment");
        assert_eq!(
            decoded,
            vec![
                TopicPartition::new("billing", 1),
                TopicPartition::new("orders", 0),
                TopicPartition::new("orders", 2),
            ]
        );
    }

    #[test]
    fn empty_assignment_decodes_to_nothing() {
        assert_eq!(
            decode_consumer_assignment(&encode(0, &[], b"")),
            Some(vec![])
        );
    }

    #[test]
    fn garbage_is_not_an_assignment() {
        assert_eq!(decode_consumer_assignment(&[]), None);
        assert_eq!(
            decode_consumer_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
            None
        );
        let mut truncated = encode(0, &[("orders", &[0, 1])], b"");
        truncated.truncate(12);
        assert_eq!(decode_consumer_assignment(&truncated), None);
    }
}
