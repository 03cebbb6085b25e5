//! Behaviour tests for the FEAT rewrite (RFC 2389 §3.2, RFC 4217 §6) with a
//! real vsftpd reply. Pure data, no I/O.

use crate::control::{gateway_feat, FeatOptions, Reply, ReplyAssembler};

const ALL: FeatOptions = FeatOptions {
    tls_offered: true,
    epsv: true,
    active: true,
};

fn vsftpd_feat() -> Reply {
    let mut assembler = ReplyAssembler::new();
    let mut out = None;
    for line in [
        "211-Features:",
        " AUTH TLS",
        " EPRT",
        " EPSV",
        " MDTM",
        " PASV",
        " PBSZ",
        " PROT",
        " REST STREAM",
        " SIZE",
        " TVFS",
        " UTF8",
        "211 End",
    ] {
        out = assembler.push_line(line.as_bytes().to_vec()).unwrap();
    }
    out.unwrap()
}

fn wire(reply: &Reply) -> String {
    String::from_utf8(reply.to_bytes()).unwrap()
}

// RFC 2389 §3.2 format; RFC 4217 §6: AUTH TLS, PBSZ, PROT are the gateway's.
#[test]
fn vsftpd_feat_is_rewritten_to_the_gateway_features() {
    assert_eq!(
        wire(&gateway_feat(Some(&vsftpd_feat()), &ALL)),
        "211-Features:\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n EPRT\r\n \
         MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n"
    );
}

#[test]
fn gateway_features_are_dropped_when_not_offered() {
    let none = FeatOptions {
        tls_offered: false,
        epsv: false,
        active: false,
    };
    assert_eq!(
        wire(&gateway_feat(Some(&vsftpd_feat()), &none)),
        "211-Features:\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n"
    );
}

#[test]
fn no_backend_feat_gives_only_gateway_features() {
    assert_eq!(
        wire(&gateway_feat(None, &ALL)),
        "211-Features:\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n EPSV\r\n EPRT\r\n211 End\r\n"
    );
}

// Old servers answer FEAT with 500/502 (RFC 2389 §3.1 predates them).
#[test]
fn non_211_backend_reply_contributes_nothing() {
    let refused = Reply::new(500, "FEAT not understood");
    assert_eq!(gateway_feat(Some(&refused), &ALL), gateway_feat(None, &ALL));
}

#[test]
fn features_are_matched_by_first_word_case_insensitively_and_kept_verbatim() {
    let backend = Reply::multi(
        211,
        &[
            "Extensions supported:",
            "auth TLS;SSL",
            "  MLST type*;size*;modify*;",
            "",
            "Ccc",
            "ADAT",
            "CONF",
            "ENC",
            "MIC",
            "HOST",
            "epsv",
            "EPRTX",
            "LANG EN*",
            "MLST type*;size*;modify*;",
            "End.",
        ],
    );
    let out = gateway_feat(Some(&backend), &ALL);
    let expected: Vec<Vec<u8>> = [
        "211-Features:",
        " AUTH TLS",
        " AUTH SSL",
        " PBSZ",
        " PROT",
        " EPSV",
        " EPRT",
        " MLST type*;size*;modify*;",
        " EPRTX",
        " LANG EN*",
        "211 End",
    ]
    .iter()
    .map(|line| line.as_bytes().to_vec())
    .collect();
    assert_eq!(out.lines, expected);
}

#[test]
fn rewritten_feat_reassembles_as_one_reply() {
    let out = gateway_feat(Some(&vsftpd_feat()), &ALL);
    let mut assembler = ReplyAssembler::new();
    let mut got = None;
    for line in out.lines.clone() {
        got = assembler.push_line(line).unwrap();
    }
    assert_eq!(got, Some(out));
}
