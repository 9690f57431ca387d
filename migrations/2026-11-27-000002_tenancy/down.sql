DROP TABLE webhook_endpoints;
DROP TABLE provider_credentials;
DROP TABLE api_keys;
DROP TABLE projects;
