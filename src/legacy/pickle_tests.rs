use super::super::pystr::{decode_str, quoted_bytes, raw_unicode_escape};
use super::*;

fn only_snapshot(module: &str, name: &str) -> bool {
    (module, name) == ("epygibus_pkg.snapshot", "Snapshot")
}

/// What Python 3.11 writes for a two-level `Snapshot` tree (the child
/// names its parent) with a non-UTF-8 file name `f\xe9`, protocol 2.
pub(crate) const PROTO2: &[u8] = b"\x80\x02cepygibus_pkg.snapshot\nSnapshot\nq\x00)\x81q\x01}q\x02(X\x06\x00\x00\x00parentq\x03NX\n\x00\x00\x00attributesq\x04NX\x07\x00\x00\x00subdirsq\x05}q\x06X\x01\x00\x00\x00dq\x07h\x00)\x81q\x08}q\t(h\x03h\x01h\x04(M\xedAK\x01K\x02K\x02K\x00K\x00M\x00\x10K\nK\x14K\x1etq\nh\x05}q\x0bX\x05\x00\x00\x00filesq\x0c}q\rX\x04\x00\x00\x00f\xed\xb3\xa9q\x0e(M\xa4\x81K\x03K\x02K\x01K\x00K\x00K\x05K\x0bK\x15K\x1ftq\x0fX(\x00\x00\x00aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaq\x10\x86q\x11sX\n\x00\x00\x00file_linksq\x12}q\x13X\x01\x00\x00\x00lq\x14(M\xff\xa1K\x04K\x02K\x01K\x00K\x00K\x01K\x01K\x02K\x03tq\x15X\x01\x00\x00\x00fq\x16\x86q\x17sX\x0c\x00\x00\x00subdir_linksq\x18}q\x19ubsh\x0c}q\x1ah\x12}q\x1bh\x18}q\x1cub.";

/// The same tree in protocol 0 (copy_reg._reconstructor, text opcodes).
pub(crate) const PROTO0: &[u8] = b"ccopy_reg\n_reconstructor\np0\n(cepygibus_pkg.snapshot\nSnapshot\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n(dp5\nVparent\np6\nNsVattributes\np7\nNsVsubdirs\np8\n(dp9\nVd\np10\ng0\n(g1\ng2\nNtp11\nRp12\n(dp13\ng6\ng4\nsg7\n(I16877\nI1\nI2\nI2\nI0\nI0\nI4096\nI10\nI20\nI30\ntp14\nsg8\n(dp15\nsVfiles\np16\n(dp17\nVf\\udce9\np18\n((I33188\nI3\nI2\nI1\nI0\nI0\nI5\nI11\nI21\nI31\ntp19\nVaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\np20\ntp21\nssVfile_links\np22\n(dp23\nVl\np24\n((I41471\nI4\nI2\nI1\nI0\nI0\nI1\nI1\nI2\nI3\ntp25\nVf\np26\ntp27\nssVsubdir_links\np28\n(dp29\nsbssg16\n(dp30\nsg22\n(dp31\nsg28\n(dp32\nsb.";

fn field(p: &Pickle, obj: Id, key: &str) -> Id {
    let Value::Object {
        state: Some(state), ..
    } = p.get(obj)
    else {
        panic!("not a built object: {:?}", p.get(obj));
    };
    let Value::Dict(items) = p.get(*state) else {
        panic!("state is not a dict");
    };
    items
        .iter()
        .find(|(k, _)| p.get(*k) == &Value::Str(key.as_bytes().to_vec()))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no field {key}"))
}

fn dict_item(p: &Pickle, dict: Id, key: &[u8]) -> Id {
    let Value::Dict(items) = p.get(dict) else {
        panic!("not a dict");
    };
    items
        .iter()
        .find(|(k, _)| p.get(*k) == &Value::Str(key.to_vec()))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no item {key:?}"))
}

#[test]
fn protocols_0_and_2_read_the_same_tree_with_back_references() {
    for bytes in [PROTO0, PROTO2] {
        let p = read(bytes, &only_snapshot).unwrap();
        let child = dict_item(&p, field(&p, p.root, "subdirs"), b"d");
        // The child's parent is the root object itself (a back-reference).
        assert_eq!(field(&p, child, "parent"), p.root);
        let files = field(&p, child, "files");
        let Value::Tuple(pair) = p.get(dict_item(&p, files, b"f\xe9")) else {
            panic!("file entry is not a tuple")
        };
        let Value::Tuple(attrs) = p.get(pair[0]) else {
            panic!()
        };
        assert_eq!(attrs.len(), 10);
        assert_eq!(p.get(attrs[0]), &Value::Int(33188));
        assert_eq!(p.get(attrs[9]), &Value::Int(31));
        assert_eq!(p.get(pair[1]), &Value::Str(vec![b'a'; 40]));
    }
}

#[test]
fn unexpected_classes_are_refused_by_name() {
    let err = read(PROTO2, &|_, _| false).unwrap_err();
    assert_eq!(
        err,
        PickleError::UnexpectedGlobal {
            module: "epygibus_pkg.snapshot".into(),
            name: "Snapshot".into()
        }
    );
    // os.system via REDUCE: the global is refused before anything else.
    let evil = b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.";
    assert!(matches!(
        read(evil, &only_snapshot),
        Err(PickleError::UnexpectedGlobal { .. })
    ));
    // An allowed class called through REDUCE is not data: refused.
    let call = b"\x80\x02cepygibus_pkg.snapshot\nSnapshot\n)R.";
    assert!(matches!(
        read(call, &only_snapshot),
        Err(PickleError::Malformed { .. })
    ));
}

#[test]
fn builtin_reconstructors_build_data() {
    let bytes = read(
        b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00\x00\xc3\xbfq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.",
        &only_snapshot,
    )
    .unwrap();
    assert_eq!(bytes.get(bytes.root), &Value::Bytes(vec![0, 0xff]));
    let set = read(
        b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
        &only_snapshot,
    )
    .unwrap();
    let Value::Set(items) = set.get(set.root) else {
        panic!()
    };
    assert_eq!(items.len(), 2);
}

#[test]
fn every_truncation_is_an_error() {
    for bytes in [PROTO0, PROTO2] {
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut], &only_snapshot).is_err(), "cut {cut}");
        }
    }
}

#[test]
fn persistent_ids_and_extensions_are_refused() {
    for op in [b'P', b'Q', 0x82, 0x83, 0x84] {
        let bytes = [0x80, 2, b'N', op, 0, 0, 0, 0, b'.'];
        assert!(
            matches!(
                read(&bytes, &only_snapshot),
                Err(PickleError::Unsupported { .. })
            ),
            "{op:#x}"
        );
    }
}

#[test]
fn strings_decode_to_file_name_bytes() {
    assert_eq!(decode_str(b"plain").unwrap(), b"plain");
    assert_eq!(decode_str(b"caf\xed\xb3\xa9").unwrap(), b"caf\xe9");
    assert_eq!(decode_str("é".as_bytes()).unwrap(), "é".as_bytes());
    // A high surrogate is not a file-name byte.
    assert!(decode_str(b"\xed\xa0\x80").is_none());
    assert!(decode_str(b"\xff").is_none());
    assert_eq!(raw_unicode_escape(b"f\\udce9").unwrap(), b"f\xe9");
    assert_eq!(raw_unicode_escape(b"\xe9").unwrap(), "é".as_bytes());
    assert_eq!(quoted_bytes(b"'a\\x00\\n'").unwrap(), b"a\0\n");
    assert!(quoted_bytes(b"'open").is_none());
}

#[test]
fn integers_of_every_width() {
    let cases: &[(&[u8], i64)] = &[
        (b"\x80\x02J\xff\xff\xff\xff.", -1),
        (b"\x80\x02\x8a\x05\x00\x00\x00\x00\x01.", 1 << 32),
        (b"\x80\x02\x8a\x01\xff.", -1),
        (b"\x80\x02\x8a\x00.", 0),
        (b"I-7\n.", -7),
        (b"L12L\n.", 12),
    ];
    for (bytes, want) in cases {
        let p = read(bytes, &only_snapshot).unwrap();
        assert_eq!(p.get(p.root), &Value::Int(*want));
    }
    assert!(
        read(
            b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.",
            &only_snapshot
        )
        .is_err()
    );
}

proptest::proptest! {
    #[test]
    fn pickle_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        let _ = read(&bytes, &only_snapshot);
        let mut framed = vec![0x80, 5];
        framed.extend_from_slice(&bytes);
        let _ = read(&framed, &|_, _| true);
    }

    /// Mutations of real snapshots: flipped bytes and cuts give an error
    /// or a pickle, never a panic.
    #[test]
    fn mutated_pickles_never_panic(
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
        cut in proptest::prelude::any::<usize>(),
        proto0 in proptest::prelude::any::<bool>(),
    ) {
        let mut bytes = if proto0 { PROTO0.to_vec() } else { PROTO2.to_vec() };
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = read(&bytes, &|_, _| true);
    }
}
