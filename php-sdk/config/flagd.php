<?php

declare(strict_types=1);

// flagd client settings. Plain values only (no closures), so `php artisan config:cache` works.
// Set the context resolver in code: Flagd::resolveContextUsing(fn ($request) => ...).

return [
    // Base URL of flagd-server.
    'url' => env('FLAGD_URL', 'http://127.0.0.1:8013'),

    // PEM file of the private CAs to trust for an https:// FLAGD_URL; empty: the system's bundle.
    'ca_file' => env('FLAGD_CA_CERT', ''),

    // An `evaluate` token: it selects the environment (production, staging, ...).
    'token' => env('FLAGD_TOKEN', ''),

    // Total time for one bulk evaluation, and for the TCP connect, in milliseconds.
    'timeout_ms' => (int) env('FLAGD_TIMEOUT_MS', 250),
    'connect_timeout_ms' => (int) env('FLAGD_CONNECT_TIMEOUT_MS', 50),

    // Seconds an answer is shared between workers before it is revalidated (ETag).
    'cache_ttl' => (float) env('FLAGD_CACHE_TTL', 1.0),

    // 'auto' (APCu when enabled, else none), 'apcu', or 'none', in any case. env() reads
    // FLAGD_CACHE=null as PHP null: no cache, as Laravel's `null` cache store. Another value
    // is logged and read as 'auto'.
    'cache' => env('FLAGD_CACHE', 'auto') ?? 'none',

    // Seconds after cache_ttl runs out that the last known answer may still be served while
    // flagd fails; 0 (or less): never, failures serve the caller's default. The client counts
    // whole seconds: a fraction rounds up, so 0.5 still serves stale rather than never. Not a
    // number: the default. Kept within 0 and far past any use, so that no cast overflows.
    'stale_ttl' => (int) ceil(max(0, min(1e15, filter_var(
        env('FLAGD_STALE_TTL', 86400),
        FILTER_VALIDATE_FLOAT,
        ['options' => ['default' => 86400]],
    )))),

    // Failures in a row that open the circuit breaker, and how long it stays open (seconds).
    'breaker_threshold' => (int) env('FLAGD_BREAKER_THRESHOLD', 3),
    'breaker_cooldown' => (float) env('FLAGD_BREAKER_COOLDOWN', 5.0),

    // Throw on failures instead of serving defaults (tests and local development only).
    // true/1/on/yes and false/0/off/no/empty, in any case; anything else: the default. Not a
    // (bool) cast, which reads "off" and "no" as true.
    'strict' => filter_var(env('FLAGD_STRICT', false), FILTER_VALIDATE_BOOLEAN, FILTER_NULL_ON_FAILURE) ?? false,

    // Report failures to Laravel's log. Read as FLAGD_STRICT is.
    'log' => filter_var(env('FLAGD_LOG', true), FILTER_VALIDATE_BOOLEAN, FILTER_NULL_ON_FAILURE) ?? true,
];
