//! Repositories and archives in an S3 bucket, against a real S3 server on
//! loopback that each test starts and stops (`world::s3`): the storage
//! interface's conformance suite, the whole command flow, copies between
//! repositories, crashes, two clients at once and a failing server.

use crate::world::s3::S3Server;
use crate::world::{World, lib_api};

fn server(test: &str, w: &World) -> Option<S3Server> {
    S3Server::up(test, &w.path("s3-rig"))
}

#[test]
fn s3_store_passes_the_conformance_suite() {
    let w = World::new();
    let Some(s3) = server("s3_store_passes_the_conformance_suite", &w) else {
        return;
    };
    lib_api::run_conformance(&s3.url("conformance/one"), &s3.vars);
    // At the bucket's root too (no key prefix).
    lib_api::run_conformance(&s3.url(""), &s3.vars);
}
