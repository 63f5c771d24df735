//! The protobuf codec for the admin calls, with buffers sized for their messages.
//!
//! tonic's default codec starts every call with 8 KiB encode and decode buffers. Admin
//! messages are a few bytes, and a fan-out makes a call per pod: at a thousand pods the
//! default buffers are megabytes of allocation per fan-out. Used by the generated server;
//! this crate's own client frames its messages itself (`wire`).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Enough for any admin message; larger ones still work, the buffer grows.
const BUFFER_SIZE: usize = 64;
/// tonic's default: how much a stream encodes before yielding.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with small buffers. Named by the generated code (`codec_path` in
/// the codegen test in `pb`).
#[derive(Debug, Clone, Default)]
pub(crate) struct SmallCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Codec for SmallCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
