//! `GetRandomPassword`: a password from the classes the request keeps, from the operating
//! system's randomness (`rand`'s thread RNG, a CSPRNG reseeded from the OS).

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::error::{Kind, SmResult, fail};

/// The punctuation AWS draws from.
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// What a request asks for.
#[derive(Clone, Debug)]
pub struct PasswordSpec<'a> {
    /// Length in characters (1–4096).
    pub length: usize,
    /// Characters never used.
    pub exclude: &'a str,
    /// Leave out digits.
    pub no_numbers: bool,
    /// Leave out punctuation.
    pub no_punctuation: bool,
    /// Leave out upper-case letters.
    pub no_uppercase: bool,
    /// Leave out lower-case letters.
    pub no_lowercase: bool,
    /// Use the space character too.
    pub space: bool,
    /// At least one character of each class used.
    pub each_class: bool,
}

/// Generates the password `spec` describes.
pub fn generate(spec: &PasswordSpec<'_>) -> SmResult<String> {
    let keep =
        |set: &str| -> Vec<char> { set.chars().filter(|c| !spec.exclude.contains(*c)).collect() };
    let mut classes: Vec<Vec<char>> = Vec::new();
    if !spec.no_lowercase {
        classes.push(keep("abcdefghijklmnopqrstuvwxyz"));
    }
    if !spec.no_uppercase {
        classes.push(keep("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    }
    if !spec.no_numbers {
        classes.push(keep("0123456789"));
    }
    if !spec.no_punctuation {
        classes.push(keep(PUNCTUATION));
    }
    if spec.space {
        classes.push(keep(" "));
    }
    classes.retain(|c| !c.is_empty());
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    if all.is_empty() {
        return fail(
            Kind::InvalidParameter,
            "The password can't be generated because every character is excluded.",
        );
    }
    if spec.each_class && spec.length < classes.len() {
        return fail(
            Kind::InvalidParameter,
            format!(
                "The password length {} is too short to include a character of each of the {} types required.",
                spec.length,
                classes.len()
            ),
        );
    }
    let mut rng = rand::rng();
    let mut out: Vec<char> = Vec::with_capacity(spec.length);
    if spec.each_class {
        for class in &classes {
            out.extend(class.choose(&mut rng));
        }
    }
    while out.len() < spec.length {
        out.extend(all.choose(&mut rng));
    }
    // Shuffle so the required characters are not always first (Fisher–Yates).
    for i in (1..out.len()).rev() {
        let j = rng.random_range(0..=i);
        out.swap(i, j);
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(length: usize) -> PasswordSpec<'static> {
        PasswordSpec {
            length,
            exclude: "",
            no_numbers: false,
            no_punctuation: false,
            no_uppercase: false,
            no_lowercase: false,
            space: false,
            each_class: true,
        }
    }

    #[test]
    fn every_class_appears_and_exclusions_hold() {
        for _ in 0..50 {
            let p = generate(&PasswordSpec {
                exclude: "abc",
                ..spec(8)
            })
            .expect("password");
            assert_eq!(p.chars().count(), 8);
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| PUNCTUATION.contains(c)));
            assert!(!p.contains(['a', 'b', 'c']));
        }
    }

    #[test]
    fn impossible_requests_are_refused() {
        assert!(generate(&spec(3)).is_err());
        let none = PasswordSpec {
            no_numbers: true,
            no_punctuation: true,
            no_uppercase: true,
            no_lowercase: true,
            ..spec(10)
        };
        assert!(generate(&none).is_err());
    }
}
