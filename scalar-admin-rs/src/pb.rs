//! The protobuf messages of the admin interface (`proto/admin.proto`, package `rpc`), and
//! with feature `server` the generated tonic service (`admin_server`).
//!
//! The code is generated once and checked in (`src/generated/rpc.rs`), as tonic does for
//! its own services: building this crate needs no proto compiler and no build script. A
//! test regenerates it from the proto with protox (pure Rust) and fails when it differs;
//! `UPDATE_GENERATED=1 cargo test -p scalar-admin --lib pb` rewrites it.

#![allow(missing_docs, unreachable_pub, clippy::all)]

include!("generated/rpc.rs");

/// `google.rpc.Status` and the one detail this crate reads, `google.rpc.ErrorInfo`: what
/// a server puts, base64-encoded, in the `grpc-status-details-bin` trailer.
pub mod google_rpc {
    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `google.rpc.ErrorInfo`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ErrorInfo {
        #[prost(string, tag = "1")]
        pub reason: String,
        #[prost(string, tag = "2")]
        pub domain: String,
        #[prost(map = "string, string", tag = "3")]
        pub metadata: std::collections::HashMap<String, String>,
    }

    /// The type URL of a packed `ErrorInfo`.
    pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";

    impl Status {
        /// A status whose one detail is an `ErrorInfo` with this reason and domain, as
        /// Scalar servers send a failed Pause.
        pub fn with_error_info(code: i32, message: &str, reason: &str, domain: &str) -> Self {
            let info = ErrorInfo {
                reason: reason.to_owned(),
                domain: domain.to_owned(),
                metadata: Default::default(),
            };
            Status {
                code,
                message: message.to_owned(),
                details: vec![Any {
                    type_url: ERROR_INFO_TYPE.to_owned(),
                    value: ::prost::Message::encode_to_vec(&info),
                }],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The checked-in code is what the proto generates today.
    #[test]
    fn generated_code_matches_the_proto() {
        let root = env!("CARGO_MANIFEST_DIR");
        let fds = protox::compile(["admin.proto"], [format!("{root}/../proto")]).unwrap();
        let out = std::env::temp_dir().join(format!("scalar-admin-pb-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        tonic_prost_build::configure()
            .build_client(false)
            .build_server(true)
            .build_transport(false)
            .server_mod_attribute("rpc", r#"#[cfg(feature = "server")]"#)
            .codec_path("crate::gate::codec::SmallCodec")
            .out_dir(&out)
            .compile_fds(fds)
            .unwrap();
        let fresh = std::fs::read_to_string(out.join("rpc.rs")).unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        let checked_in = format!("{root}/src/generated/rpc.rs");
        if std::env::var_os("UPDATE_GENERATED").is_some() {
            std::fs::write(&checked_in, &fresh).unwrap();
        }
        assert!(
            std::fs::read_to_string(&checked_in).unwrap() == fresh,
            "src/generated/rpc.rs is stale: run UPDATE_GENERATED=1 cargo test -p scalar-admin --lib pb"
        );
    }
}
