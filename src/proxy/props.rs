//! Property tests of path checking (SPEC §4 Paths): 10,000 cases each; none may panic.

use super::target::check_path;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        ..ProptestConfig::default()
    }
}

/// Pieces of segments that are neither dot segments nor encoded slashes or backslashes:
/// path characters, dots inside longer names (`a.b`, `...`, `.well-known`) and harmless
/// percent-escapes.
const PIECES: &[&str] = &[
    "a", "z", "A", "Z", "0", "9", "_", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=",
    ":", "@", ".", "-", "%20", "%41", "%7e", "%7E", "%3A", "%3a", "%2D", "%2d", "%25",
];

/// Up to 8 safe segments, drawn from a seed (regex strategies made this test ten times
/// slower; a failing case still shrinks by the number of segments).
fn safe_path() -> impl Strategy<Value = Vec<String>> {
    (0usize..8, any::<u64>()).prop_map(|(n, seed)| {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let len = rng.usize(1..=12);
                let mut segment: String = (0..len)
                    .map(|_| PIECES[rng.usize(..PIECES.len())])
                    .collect();
                if segment == "." || segment == ".." {
                    segment.push('a');
                }
                segment
            })
            .collect()
    })
}

/// Any characters, half of them from the path alphabet and `%./\`.
fn any_text() -> impl Strategy<Value = String> {
    (0usize..=100, any::<u64>()).prop_map(|(len, seed)| {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len)
            .map(|_| match rng.u8(..4) {
                0 => rng.char(..),
                1 => rng.char('\0'..='\x7f'),
                _ => ['.', '/', '%', '2', 'e', 'E', 'f', 'F', '5', 'c', 'C', '\\'][rng.usize(..12)],
            })
            .collect()
    })
}

/// `.` or `..` with any dot written plainly or as `%2e`/`%2E`.
fn dot_segment() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just("."), Just("%2e"), Just("%2E")], 1..=2)
        .prop_map(|dots| dots.concat())
}

fn join(segments: &[String]) -> String {
    format!("/{}", segments.join("/"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_paths_never_panic(path in any_text(), bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = check_path(&path);
        let _ = check_path(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn paths_of_safe_segments_pass(segments in safe_path(), trailing_slash in any::<bool>()) {
        let mut path = join(&segments);
        if trailing_slash {
            path.push('/');
        }
        prop_assert!(check_path(&path).is_ok(), "{}", path);
    }

    #[test]
    fn any_dot_segment_is_refused(segments in safe_path(), at in any::<prop::sample::Index>(), dot in dot_segment(), trailing_slash in any::<bool>()) {
        let mut segments = segments;
        segments.insert(at.index(segments.len() + 1), dot);
        let mut path = join(&segments);
        if trailing_slash {
            path.push('/');
        }
        prop_assert!(check_path(&path).is_err(), "{}", path);
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_refused(
        segments in safe_path(),
        at in any::<prop::sample::Index>(),
        slash in "%(2[Ff]|5[Cc])",
    ) {
        let path = join(&segments);
        // Anywhere on a character boundary, inside a segment or between two.
        let boundaries: Vec<usize> = (0..=path.len()).filter(|i| path.is_char_boundary(*i)).collect();
        let i = boundaries[at.index(boundaries.len())];
        let path = format!("{}{slash}{}", &path[..i], &path[i..]);
        let refused = check_path(&path);
        prop_assert!(refused.is_err(), "{}", path);
    }
}
