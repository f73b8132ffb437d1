//! MirrorMaker 2 knowledge: replication-policy naming, the internal record codec, offset translation.
