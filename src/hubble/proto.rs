//! Generated code for the hand-written Hubble .proto subset (see `proto/`).
#![allow(clippy::all, missing_docs, clippy::pedantic, clippy::nursery)]

pub mod flow {
    tonic::include_proto!("flow");
    include!(concat!(env!("OUT_DIR"), "/flow.serde.rs"));
}
pub mod relay {
    tonic::include_proto!("relay");
    include!(concat!(env!("OUT_DIR"), "/relay.serde.rs"));
}
pub mod observer {
    tonic::include_proto!("observer");
    include!(concat!(env!("OUT_DIR"), "/observer.serde.rs"));
}
