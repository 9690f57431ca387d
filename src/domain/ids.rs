//! Resource ids: a type prefix and a UUIDv7 (`msg_01936b2e...`), so ids say what they name and
//! sort by creation time, which keeps B-tree inserts append-mostly and keyset pages stable.

use uuid::Uuid;

pub const USER: &str = "usr";
pub const SESSION: &str = "ses";
pub const ACCOUNT: &str = "acc";
pub const PASSKEY: &str = "pky";
pub const ORGANIZATION: &str = "org";
pub const MEMBER: &str = "mem";
pub const INVITATION: &str = "inv";
pub const PROJECT: &str = "prj";
pub const API_KEY: &str = "key";
pub const PROVIDER: &str = "prv";
pub const WEBHOOK: &str = "whk";
pub const MESSAGE: &str = "msg";
pub const EVENT: &str = "evt";
pub const WEBHOOK_DELIVERY: &str = "whd";
pub const SUPPRESSION: &str = "sup";
pub const TEMPLATE: &str = "tpl";

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_time_ordered() {
        let a = new_id(MESSAGE);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(MESSAGE);
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
        assert!(a < b);
    }
}
