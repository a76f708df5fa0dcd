//! [`ServiceState`] for [`SqsState`], and the typed decoder of its `sqs/1` sections.
//!
//! This is what `cryopod::service_state!` generates, written out by hand for one reason: the
//! generated section decoder reads through `&mut dyn Read` with `rmp_serde`'s streaming
//! reader, which copies every string and every field name through `Read::take` +
//! `read_to_end`. For a section of a million small messages that made decoding about 1.6×
//! slower than decoding the same bytes from a slice (where `rmp_serde` borrows). This decoder
//! reads the section into one buffer and decodes from the slice. The bytes on the wire are
//! the same (`{"sqs/1": state}` as MessagePack with field names), so old and new builds read
//! each other's bundles. The price is holding the section's bytes in memory while it is
//! decoded, which is smaller than the state decoded from it.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;

use cryopod::state::{Decoded, SectionCodec};
use cryopod::{
    Digest, MergeStrategy, ResourceCounts, Scope, ScopeFilter, ScopedState, ServiceState,
    StateError,
};
use rmp_serde::decode::Error as DecodeError;
use serde::Deserializer as _;
use serde::de::{self, Deserialize, IgnoredAny, MapAccess, Visitor};

use crate::state::SqsState;

/// The service name.
const SERVICE: &str = "sqs";
/// The state version this crate writes and runs.
const VERSION: u32 = 1;
/// The type tag of version 1 (what sections and typetag store).
const TAG: &str = "sqs/1";

#[typetag::serde(name = "sqs/1")]
impl ServiceState for SqsState {
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn upgrade(self: Box<Self>) -> Result<Box<dyn ServiceState>, StateError> {
        Err(StateError::Upgrade {
            service: SERVICE,
            from: VERSION,
            reason: "this is the newest version".into(),
        })
    }

    fn scopes(&self) -> Vec<Scope> {
        self.scoped().scopes()
    }

    fn summary(&self) -> Vec<(Scope, ResourceCounts)> {
        self.scoped().summary()
    }

    fn blobs(&self) -> BTreeSet<Digest> {
        self.scoped().blobs()
    }

    fn filtered(&self, filter: &ScopeFilter) -> Box<dyn ServiceState> {
        let mut out = SqsState::default();
        *out.scoped_mut() = self.scoped().filtered(filter);
        Box::new(out)
    }

    fn merged(
        &self,
        incoming: Box<dyn ServiceState>,
        strategy: MergeStrategy,
    ) -> Result<Box<dyn ServiceState>, StateError> {
        let incoming: SqsState = incoming.downcast(SERVICE)?;
        let mut out = SqsState::default();
        *out.scoped_mut() = self.scoped().merged(incoming.scopes, strategy);
        Ok(Box::new(out))
    }

    fn encode_section(&self, out: &mut dyn std::io::Write) -> Result<(), rmp_serde::encode::Error> {
        cryopod::state::__codec::encode(TAG, self, out)
    }

    fn clone_box(&self) -> Box<dyn ServiceState> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

cryopod::__private::inventory::submit! {
    SectionCodec {
        tag: TAG,
        decode: decode_section,
    }
}

/// Visits the section's single-entry map `{tag: state}`, refusing any other tag.
struct Tagged;

impl<'de> Visitor<'de> for Tagged {
    type Value = SqsState;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map with the single key `{TAG}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SqsState, A::Error> {
        let key: String = map
            .next_key()?
            .ok_or_else(|| de::Error::custom("empty state section"))?;
        if key != TAG {
            return Err(de::Error::custom(format!(
                "section holds `{key}`, expected `{TAG}`"
            )));
        }
        let value = map.next_value()?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than one state in a section"));
        }
        Ok(value)
    }
}

/// Decodes one `sqs/1` section from `reader`: reads it whole, decodes from the slice, and
/// reports how many bytes followed the state value (the caller refuses a section with any).
pub fn decode_section(reader: &mut dyn Read) -> Result<Decoded, DecodeError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(DecodeError::InvalidDataRead)?;
    let (state, trailing) = decode_slice(&bytes)?;
    Ok((Box::new(state), trailing))
}

/// Decodes `{"sqs/1": state}` from `bytes`, with the number of bytes after it.
pub fn decode_slice(bytes: &[u8]) -> Result<(SqsState, u64), DecodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    let state = (&mut de).deserialize_map(Tagged)?;
    // The borrowing reader does not say where it stopped. Reading one more value tells
    // whether anything follows: a marker that cannot be read means the input ended there.
    match IgnoredAny::deserialize(&mut de) {
        Err(DecodeError::InvalidMarkerRead(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok((state, 0))
        }
        // Something follows. Count it with the streaming reader, which knows its position;
        // this only runs for a malformed section.
        _ => {
            let mut rest = bytes;
            let mut counting = rmp_serde::Deserializer::new(&mut rest);
            (&mut counting).deserialize_map(Tagged)?;
            drop(counting);
            Ok((state, rest.len() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Queue;
    use imbl::OrdMap;

    fn sample() -> SqsState {
        let mut st = SqsState::default();
        st.scopes
            .get_mut(&Scope::default())
            .queues
            .insert("q".into(), Queue::new("q".into(), false, OrdMap::new(), 0));
        st
    }

    fn section(st: &SqsState) -> Vec<u8> {
        let mut out = Vec::new();
        st.encode_section(&mut out).expect("encode");
        out
    }

    #[test]
    fn decodes_what_it_encodes_with_no_trailing_bytes() {
        let st = sample();
        let (back, trailing) = decode_slice(&section(&st)).expect("decode");
        assert_eq!(back, st);
        assert_eq!(trailing, 0);
    }

    #[test]
    fn counts_the_bytes_after_the_state() {
        let mut bytes = section(&sample());
        bytes.extend_from_slice(&[0xc0, 0x01, 0x02]);
        let (_, trailing) = decode_slice(&bytes).expect("decode");
        assert_eq!(trailing, 3);
        // A byte that is not a valid value start still counts.
        let mut bytes = section(&sample());
        bytes.push(0xc1);
        assert_eq!(decode_slice(&bytes).expect("decode").1, 1);
    }

    #[test]
    fn matches_the_typetag_decoding_and_refuses_other_tags() {
        let st = sample();
        let bytes = section(&st);
        let mut de = rmp_serde::Deserializer::new(&bytes[..]);
        let erased: Box<dyn ServiceState> = Deserialize::deserialize(&mut de).expect("typetag");
        assert_eq!(erased.downcast::<SqsState>(SERVICE).expect("sqs"), st);

        let mut other = Vec::new();
        cryopod::state::__codec::encode("sqs/2", &st, &mut other).expect("encode");
        assert!(decode_slice(&other).is_err());
        assert!(decode_slice(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_registered_codec_is_this_one() {
        let codec = cryopod::state::section_codec(TAG).expect("registered");
        let (state, trailing) = (codec.decode)(&mut &section(&sample())[..]).expect("decode");
        assert_eq!(trailing, 0);
        assert_eq!(state.downcast::<SqsState>(SERVICE).expect("sqs"), sample());
    }
}
