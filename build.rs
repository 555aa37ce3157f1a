//! Generates the protobuf messages (rust-protobuf 3) and the grpcio service stubs
//! from `proto/` without `protoc`: both use the pure-Rust parser.

use std::{env, fs, path::PathBuf};

use protobuf::Message as _;
use protobuf2::Message as _;

const PROTOS: &[&str] = &["proto/security.proto", "proto/health.proto"];

fn main() {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    // gRPC core's SSL_CTX_set_tmp_ecdh(P-256) reaches src/server/tls.rs
    // instead of OpenSSL (why, and when this can go: there). `--undefined`
    // makes the linker take the wrapper from our library.
    println!("cargo:rustc-link-arg=-Wl,--wrap=SSL_CTX_ctrl");
    println!("cargo:rustc-link-arg=-Wl,--undefined=__wrap_SSL_CTX_ctrl");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .inputs(PROTOS)
        .out_dir(&out)
        .run_from_script();

    for stub in grpc_stubs() {
        fs::write(out.join(&stub.name), &stub.content).expect("write gRPC stub");
    }

    // The generated files carry inner attributes and doc comments (`#![..]`,
    // `//!`), which are not allowed inside `include!`; drop them and wrap each
    // file in a module.
    let mut wrapper = String::new();
    for name in ["security", "security_grpc", "health", "health_grpc"] {
        let path = out.join(format!("{name}.rs"));
        let code = fs::read_to_string(&path).expect("read generated file");
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("#![") && !l.trim_start().starts_with("//!"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&path, code).expect("rewrite generated file");
        wrapper.push_str(&format!("pub mod {name} {{ include!(\"{name}.rs\"); }}\n"));
    }
    fs::write(out.join("generated.rs"), wrapper).expect("write generated.rs");
}

/// grpcio-compiler only reads rust-protobuf 2 descriptors: parse with the
/// rust-protobuf 3 pure parser and convert each descriptor through its bytes.
fn grpc_stubs() -> Vec<protobuf2::compiler_plugin::GenResult> {
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include("proto")
        .inputs(PROTOS)
        .parse_and_typecheck()
        .expect("parse proto files");
    let descriptors: Vec<_> = parsed
        .file_descriptors
        .iter()
        .map(|fd| {
            let bytes = fd.write_to_bytes().expect("encode descriptor");
            protobuf2::descriptor::FileDescriptorProto::parse_from_bytes(&bytes)
                .expect("decode descriptor")
        })
        .collect();
    let names: Vec<String> = parsed
        .relative_paths
        .iter()
        .map(|p| p.to_string())
        .collect();
    grpcio_compiler::codegen::gen(&descriptors, &names)
}
