//! The Amazon SNS connector for SMS: `Publish` to a phone number, with the credential's SMS
//! type, sender id and origination number as SNS's message attributes when configured;
//! `GetSMSAttributes` to verify.

use std::collections::HashMap;

use aws_sdk_sns::Client;
use aws_sdk_sns::error::BuildError;
use aws_sdk_sns::types::MessageAttributeValue;

use crate::db::messages::Message;
use crate::domain::content::SmsContent;
use crate::domain::provider_types::{SmsType, SnsConfig};
use crate::providers::aws::{Clients, classify, receipt};
use crate::providers::connector::{
    Connector, OpenedCredential, ProviderError, SendFuture, VerifyFuture,
};

pub struct Sns {
    clients: Clients<Client>,
}

impl Sns {
    pub fn new(allow_endpoint_overrides: bool) -> Self {
        Self { clients: Clients::new(allow_endpoint_overrides) }
    }
}

impl Connector for Sns {
    fn send<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            let (client, config): (_, SnsConfig) = self.clients.get(credential, Client::new)?;
            let sms: SmsContent = serde_json::from_value(message.content.clone())
                .map_err(|_| ProviderError::Permanent("the content is not an SMS".to_owned()))?;
            let attributes = attributes(&config).map_err(|e| {
                ProviderError::Permanent(format!("SNS: cannot build the message: {e}"))
            })?;
            let output = client
                .publish()
                .phone_number(&message.recipient)
                .message(sms.text)
                .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                .send()
                .await
                .map_err(|e| classify("SNS", &e))?;
            tracing::debug!(message = %message.id, credential = %credential.id, "SNS accepted");
            receipt("SNS", output.message_id())
        })
    }

    fn verify<'a>(&'a self, credential: &'a OpenedCredential) -> VerifyFuture<'a> {
        Box::pin(async move {
            let (client, config): (_, SnsConfig) = self.clients.get(credential, Client::new)?;
            let output =
                client.get_sms_attributes().send().await.map_err(|e| classify("SNS", &e))?;
            let mut detail = format!("SNS accepted the credentials in {}", config.region);
            if let Some(kind) = output.attributes().and_then(|a| a.get("DefaultSMSType")) {
                detail.push_str(&format!("; default SMS type {kind}"));
            }
            Ok(detail)
        })
    }
}

/// SNS's per-message SMS settings, for the ones the credential configures.
fn attributes(config: &SnsConfig) -> Result<HashMap<String, MessageAttributeValue>, BuildError> {
    let sms_type = config.sms_type.map(|t| match t {
        SmsType::Transactional => "Transactional",
        SmsType::Promotional => "Promotional",
    });
    let settings = [
        ("AWS.SNS.SMS.SMSType", sms_type),
        ("AWS.SNS.SMS.SenderID", config.sender_id.as_deref()),
        ("AWS.MM.SMS.OriginationNumber", config.origination_number.as_deref()),
    ];
    let mut attributes = HashMap::new();
    for (name, value) in settings {
        if let Some(value) = value {
            let value =
                MessageAttributeValue::builder().data_type("String").string_value(value).build()?;
            attributes.insert(name.to_owned(), value);
        }
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_settings_become_attributes() {
        let config: SnsConfig = serde_json::from_value(serde_json::json!({
            "region": "eu-west-1", "senderId": "RelayIt", "smsType": "Transactional",
            "originationNumber": "+14155550100"
        }))
        .unwrap();
        let set = attributes(&config).unwrap();
        let value = |name: &str| set[name].string_value().unwrap().to_owned();
        assert_eq!(value("AWS.SNS.SMS.SMSType"), "Transactional");
        assert_eq!(value("AWS.SNS.SMS.SenderID"), "RelayIt");
        assert_eq!(value("AWS.MM.SMS.OriginationNumber"), "+14155550100");
        assert_eq!(set["AWS.SNS.SMS.SenderID"].data_type(), "String");

        let bare: SnsConfig =
            serde_json::from_value(serde_json::json!({"region": "eu-west-1"})).unwrap();
        assert!(attributes(&bare).unwrap().is_empty());
    }
}
