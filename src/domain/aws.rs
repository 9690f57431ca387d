//! AWS names RelayIt checks: region codes and SNS topic ARNs. Strict on purpose: they decide
//! which SNS topics an SES credential takes delivery receipts from, and which hosts may serve
//! SNS signing certificates (`crate::inbound::sns`).

/// The partition a region is in, and the DNS suffix of its service endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// `aws`: `amazonaws.com`.
    Aws,
    /// `aws-cn` (`cn-*` regions): `amazonaws.com.cn`.
    China,
    /// `aws-us-gov` (`us-gov-*` regions): `amazonaws.com`.
    GovCloud,
}

impl Partition {
    /// The partition of `region`, if it is a region code: two letters, one or two words, a
    /// number (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `cn-north-1`).
    pub fn of_region(region: &str) -> Option<Partition> {
        let parts: Vec<&str> = region.split('-').collect();
        let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
        let valid = matches!(parts.len(), 3 | 4)
            && parts[0].len() == 2
            && letters(parts[0])
            && parts[1..parts.len() - 1].iter().all(|p| letters(p))
            && parts.last().is_some_and(|n| {
                (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())
            });
        if !valid {
            None
        } else if parts[0] == "cn" {
            Some(Partition::China)
        } else if parts[..2] == ["us", "gov"] {
            Some(Partition::GovCloud)
        } else {
            Some(Partition::Aws)
        }
    }

    /// The partition's name in ARNs.
    pub fn arn_name(self) -> &'static str {
        match self {
            Partition::Aws => "aws",
            Partition::China => "aws-cn",
            Partition::GovCloud => "aws-us-gov",
        }
    }

    /// The DNS suffix of the partition's service endpoints (`sns.<region>.<suffix>`).
    pub fn dns_suffix(self) -> &'static str {
        match self {
            Partition::Aws | Partition::GovCloud => "amazonaws.com",
            Partition::China => "amazonaws.com.cn",
        }
    }
}

/// SNS's limit on a topic's name.
const MAX_TOPIC_NAME_CHARS: usize = 256;

/// What [`is_sns_topic_arn`] accepts, as a regular expression (for the OpenAPI document): the
/// region's partition spelled out (`cn-*` is `aws-cn`, `us-gov-*` `aws-us-gov`, any other
/// `aws`) without look-ahead, which not every regex engine has.
pub const SNS_TOPIC_ARN_PATTERN: &str = concat!(
    "^arn:(?:",
    // aws: two letters but `cn`, and after `us` a word but `gov`
    "aws:sns:(?:(?:[abd-tv-z][a-z]|c[a-mo-z]|u[a-rt-z])(?:-[a-z]+){1,2}",
    "|us-(?:[a-fh-z][a-z]*|g(?:[a-np-z][a-z]*)?|go(?:[a-uw-z][a-z]*)?|gov[a-z]+)(?:-[a-z]+)?)",
    "|aws-cn:sns:cn(?:-[a-z]+){1,2}",
    "|aws-us-gov:sns:us-gov(?:-[a-z]+)?",
    ")-[0-9]{1,2}:[0-9]{12}:[A-Za-z0-9_-]{1,256}(?:\\.fifo)?$"
);

/// Whether `arn` is the ARN of an SNS topic:
/// `arn:<partition>:sns:<region>:<12-digit account>:<name>`, the partition the region's, the
/// name SNS's letters, digits, `-` and `_` (a FIFO topic's ending in `.fifo`).
pub fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let [prefix, partition, service, region, account, name] = parts[..] else { return false };
    let name = name.strip_suffix(".fifo").unwrap_or(name);
    prefix == "arn"
        && service == "sns"
        && Partition::of_region(region).is_some_and(|p| p.arn_name() == partition)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_CHARS
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_their_partitions() {
        for (region, partition) in [
            ("us-east-1", Partition::Aws),
            ("ap-southeast-2", Partition::Aws),
            ("il-central-1", Partition::Aws),
            ("us-gov-west-1", Partition::GovCloud),
            ("cn-north-1", Partition::China),
            ("cn-northwest-1", Partition::China),
        ] {
            assert_eq!(Partition::of_region(region), Some(partition), "{region}");
        }
        for bad in [
            "",
            "evil",
            "us-east",
            "us-east-1a",
            "US-EAST-1",
            "us-east-123",
            "use-east-1",
            "us--1",
            "us-east-1-",
            "-us-east-1",
            "us.east.1",
            "us-east-1.evil",
            "a-b-c-d-1",
        ] {
            assert_eq!(Partition::of_region(bad), None, "{bad}");
        }
    }

    #[test]
    fn topic_arns() {
        for ok in [
            "arn:aws:sns:us-east-1:123456789012:ses-events",
            "arn:aws:sns:eu-west-1:123456789012:SES_Events_2",
            "arn:aws:sns:us-east-1:123456789012:events.fifo",
            "arn:aws-cn:sns:cn-north-1:123456789012:ses",
            "arn:aws-us-gov:sns:us-gov-west-1:123456789012:ses",
        ] {
            assert!(is_sns_topic_arn(ok), "{ok}");
        }
        let long = format!("arn:aws:sns:us-east-1:123456789012:{}", "a".repeat(257));
        for bad in [
            "",
            "ses-events",
            "arn:aws:sqs:us-east-1:123456789012:ses-events",
            "arn:aws:sns:us-east-1:12345678901:ses-events",
            "arn:aws:sns:us-east-1:1234567890123:ses-events",
            "arn:aws:sns:us-east-1:12345678901a:ses-events",
            "arn:aws:sns:us-east-1:123456789012:",
            "arn:aws:sns:us-east-1:123456789012:.fifo",
            "arn:aws:sns:us-east-1:123456789012:ses events",
            "arn:aws:sns:us-east-1:123456789012:ses:extra",
            "arn:aws:sns::123456789012:ses-events",
            "arn:aws:sns:evil:123456789012:ses-events",
            "arn:aws:sns:cn-north-1:123456789012:ses",
            "arn:aws-cn:sns:us-east-1:123456789012:ses",
            "arn:aws-us-gov:sns:us-east-1:123456789012:ses",
            "arn:azure:sns:us-east-1:123456789012:ses",
            " arn:aws:sns:us-east-1:123456789012:ses-events",
            &long,
        ] {
            assert!(!is_sns_topic_arn(bad), "{bad}");
        }
    }
}
