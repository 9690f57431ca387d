// @generated automatically by Diesel CLI.

diesel::table! {
    accounts (id) {
        id -> Text,
        user_id -> Text,
        provider_id -> Text,
        account_id -> Text,
        sealed_tokens -> Nullable<Bytea>,
        tokens_key_id -> Nullable<Text>,
        access_token_expires_at -> Nullable<Timestamptz>,
        scope -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email -> Text,
        kind -> Text,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        organization_id -> Text,
        project_id -> Nullable<Text>,
        name -> Text,
        key_hash -> Bytea,
        prefix -> Text,
        scopes -> Array<Text>,
        rate_limit -> Nullable<Int4>,
        created_by -> Nullable<Text>,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    held_receipts (id) {
        id -> Int8,
        organization_id -> Text,
        channel -> Text,
        provider_message_id -> Text,
        from_statuses -> Array<Text>,
        to_status -> Text,
        reason -> Nullable<Text>,
        details -> Jsonb,
        received_at -> Timestamptz,
        provider_credential_id -> Nullable<Text>,
        suppress -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (project_id, key) {
        project_id -> Text,
        key -> Text,
        request_hash -> Bytea,
        status -> Text,
        response_status -> Nullable<Int4>,
        response_body -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    invitations (id) {
        id -> Text,
        organization_id -> Text,
        email -> Text,
        role -> Text,
        status -> Text,
        token_hash -> Bytea,
        inviter_id -> Nullable<Text>,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    members (id) {
        id -> Text,
        organization_id -> Text,
        user_id -> Text,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    message_events (id) {
        id -> Text,
        message_id -> Text,
        status -> Text,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    message_search (message_id) {
        message_id -> Text,
        project_id -> Text,
        recipient -> Text,
        subject -> Nullable<Text>,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        organization_id -> Text,
        project_id -> Text,
        api_key_id -> Nullable<Text>,
        channel -> Text,
        recipient -> Text,
        requested_provider -> Nullable<Text>,
        provider_credential_id -> Nullable<Text>,
        provider_type -> Nullable<Text>,
        status -> Text,
        status_reason -> Nullable<Text>,
        attempts -> Int4,
        content -> Jsonb,
        metadata -> Jsonb,
        provider_message_id -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        send_at -> Nullable<Timestamptz>,
        next_attempt_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        throttled_since -> Nullable<Timestamptz>,
        due_at -> Nullable<Timestamptz>,
        final_status -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        template_id -> Nullable<Text>,
        template_version -> Nullable<Int4>,
    }
}

diesel::table! {
    organizations (id) {
        id -> Text,
        name -> Text,
        slug -> Text,
        logo -> Nullable<Text>,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Text,
        user_id -> Text,
        name -> Nullable<Text>,
        credential_id -> Bytea,
        passkey -> Jsonb,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    projects (id) {
        id -> Text,
        organization_id -> Text,
        name -> Text,
        slug -> Text,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        message_retention_days -> Nullable<Int4>,
        one_click_unsubscribe -> Bool,
        unsubscribe_mailto -> Nullable<Text>,
    }
}

diesel::table! {
    provider_credentials (id) {
        id -> Text,
        organization_id -> Text,
        project_id -> Nullable<Text>,
        name -> Text,
        slug -> Text,
        channel -> Text,
        provider_type -> Text,
        sealed_secrets -> Bytea,
        secrets_key_id -> Text,
        config -> Jsonb,
        is_active -> Bool,
        priority -> Int4,
        last_error -> Nullable<Text>,
        last_error_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        token_hash -> Bytea,
        active_organization_id -> Nullable<Text>,
        expires_at -> Timestamptz,
        ip_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_seen_at -> Timestamptz,
    }
}

diesel::table! {
    suppressions (id) {
        id -> Text,
        organization_id -> Text,
        project_id -> Text,
        channel -> Text,
        address -> Text,
        reason -> Text,
        message_id -> Nullable<Text>,
        note -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    template_versions (template_id, version) {
        template_id -> Text,
        version -> Int4,
        content -> Jsonb,
        published_by -> Nullable<Text>,
        published_at -> Timestamptz,
    }
}

diesel::table! {
    templates (id) {
        id -> Text,
        organization_id -> Text,
        project_id -> Text,
        slug -> Text,
        name -> Text,
        channel -> Text,
        draft -> Jsonb,
        latest_version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        email -> Text,
        name -> Text,
        password_hash -> Nullable<Text>,
        email_verified -> Bool,
        image -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Text,
        organization_id -> Text,
        webhook_endpoint_id -> Text,
        message_id -> Text,
        event_id -> Text,
        event_type -> Text,
        attempt -> Int4,
        succeeded -> Bool,
        status_code -> Nullable<Int4>,
        duration_ms -> Nullable<Int4>,
        response_body -> Nullable<Text>,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Text,
        organization_id -> Text,
        project_id -> Text,
        url -> Text,
        description -> Nullable<Text>,
        event_types -> Array<Text>,
        sealed_secret -> Bytea,
        secret_key_id -> Text,
        previous_sealed_secret -> Nullable<Bytea>,
        previous_secret_key_id -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        is_active -> Bool,
        disabled_reason -> Nullable<Text>,
        disabled_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        rate_limit -> Nullable<Int4>,
    }
}

diesel::table! {
    webhook_jobs (id) {
        id -> Int8,
        organization_id -> Text,
        webhook_endpoint_id -> Text,
        message_id -> Text,
        event_id -> Text,
        event_type -> Text,
        created_at -> Timestamptz,
        pushed_at -> Nullable<Timestamptz>,
        tries -> Int4,
    }
}

diesel::joinable!(accounts -> users (user_id));
diesel::joinable!(api_keys -> organizations (organization_id));
diesel::joinable!(api_keys -> users (created_by));
diesel::joinable!(held_receipts -> organizations (organization_id));
diesel::joinable!(idempotency_keys -> projects (project_id));
diesel::joinable!(invitations -> organizations (organization_id));
diesel::joinable!(invitations -> users (inviter_id));
diesel::joinable!(members -> organizations (organization_id));
diesel::joinable!(members -> users (user_id));
diesel::joinable!(messages -> provider_credentials (provider_credential_id));
diesel::joinable!(passkeys -> users (user_id));
diesel::joinable!(projects -> organizations (organization_id));
diesel::joinable!(provider_credentials -> organizations (organization_id));
diesel::joinable!(sessions -> organizations (active_organization_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(template_versions -> templates (template_id));
diesel::joinable!(webhook_deliveries -> message_events (event_id));
diesel::joinable!(webhook_deliveries -> messages (message_id));
diesel::joinable!(webhook_deliveries -> organizations (organization_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (webhook_endpoint_id));
diesel::joinable!(webhook_endpoints -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    api_keys,
    held_receipts,
    idempotency_keys,
    invitations,
    members,
    message_events,
    message_search,
    messages,
    organizations,
    passkeys,
    projects,
    provider_credentials,
    sessions,
    suppressions,
    template_versions,
    templates,
    users,
    webhook_deliveries,
    webhook_endpoints,
    webhook_jobs,
);
