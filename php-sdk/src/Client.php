<?php

declare(strict_types=1);

namespace Flagd;

use Flagd\Cache\ApcuCache;
use Flagd\Cache\ArrayCache;
use Flagd\Cache\NullCache;
use Flagd\Contracts\Cache;
use Flagd\Contracts\ProvidesFlagdContext;
use Flagd\Contracts\Transport;
use Flagd\Http\CurlTransport;
use Flagd\Http\Response;
use Flagd\Http\TransportException;

/**
 * The flagd client. Every flag of a context comes from one bulk OFREP evaluation, made at
 * most once per context in a PHP request (memoized on this object), and shared between
 * workers through the cache for `cacheTtl` seconds; after that it is revalidated with
 * `If-None-Match`. Nothing here throws on a service failure (unless `strict`): the answer
 * is the last known value (reason `STALE`) or the caller's default (reason `ERROR`).
 */
final class Client
{
    /** How long, past `cacheTtl`, the last known answer may be served through an outage, in seconds. */
    public const DEFAULT_STALE_TTL = 86400;

    /**
     * How long an answer is kept past its freshness even when it may not be served stale
     * (a small `staleTtl`): long enough for the next revalidation to be a `304` rather
     * than the whole answer again.
     */
    private const KEEP_FOR_REVALIDATION = 3600;

    /**
     * What `fromConfig()` reads as `cache`, whatever the case: the documented `auto`, `apcu`
     * and `none`; `null`, Laravel's name for no cache; `array`, a per-process cache.
     */
    private const CACHE_NAMES = ['auto', 'apcu', 'none', 'null', 'array'];

    /** How long one worker's revalidation holds off the others, in seconds. */
    private const LOCK_TTL = 1;

    /** Cache TTLs stay well inside int range (a TTL that overflowed would be a float). */
    private const MAX_KEEP = PHP_INT_MAX >> 2;

    /** What each optional field of an OFREP evaluation may hold when present. */
    private const FIELD_TYPES = [
        'variant' => 'is_string',
        'reason' => 'is_string',
        'errorCode' => 'is_string',
        'errorDetails' => 'is_string',
        'metadata' => 'is_array',
    ];

    private readonly string $bulkUrl;
    private readonly string $namespace;
    private readonly Cache $cache;
    private readonly Transport $transport;
    private readonly CircuitBreaker $breaker;
    /** Seconds, never negative: how long past `cacheTtl` the last known answer may be served. */
    private readonly int $staleTtl;
    /** @var \Closure(): float */
    private readonly \Closure $clock;

    /** @var array<string, array{flags: array<string, array<string, mixed>>, stale: bool, error: ?string, code?: string}> */
    private array $memo = [];

    /**
     * Contexts that cannot be sent (they have no cache key to memoize under), so that each is
     * reported once, not once per flag checked; and those `contextFrom()` made for a value
     * that is no context, refused before anything is asked of flagd.
     *
     * @var \WeakMap<Context, array{flags: array{}, stale: false, error: string, code: string}>
     */
    private \WeakMap $unsendable;

    /** @var array<string, true> the types of unusable contexts logged in this request (`contextFrom()`) */
    private array $reportedKinds = [];

    /** @var \Closure|null */
    private ?\Closure $contextResolver = null;
    /** @var \Closure(): array<int, mixed> */
    private \Closure $contextResolverInput;
    private ?Context $resolvedContext = null;
    private mixed $resolvedFor = null;

    /** @var int HTTP calls made by this object (for tests and benchmarks) */
    private int $requests = 0;

    /**
     * @param string $url the service's base URL, e.g. `http://flagd:8013`
     * @param string $token an `evaluate` token (it selects the environment)
     * @param float $cacheTtl seconds a shared answer is used before revalidating
     * @param int $connectTimeoutMs connect timeout
     * @param int $timeoutMs total time for one request
     * @param Cache|null $cache shared cache; APCu when available, else none
     * @param object|null $logger anything with PSR-3 `warning`/`error` methods
     * @param int $staleTtl seconds past `cacheTtl` the last known answer may be served when
     *     flagd fails; 0 (or less): never, failures give the caller's default
     * @param (callable(): float)|null $clock seconds (tests)
     */
    public function __construct(
        string $url,
        private readonly string $token,
        private readonly float $cacheTtl = 1.0,
        private readonly int $connectTimeoutMs = 50,
        private readonly int $timeoutMs = 250,
        ?Cache $cache = null,
        ?Transport $transport = null,
        private readonly ?object $logger = null,
        private readonly bool $strict = false,
        int $breakerThreshold = 3,
        float $breakerCooldown = 5.0,
        int $staleTtl = self::DEFAULT_STALE_TTL,
        ?callable $clock = null,
        ?CircuitBreaker $breaker = null,
    ) {
        $this->staleTtl = max(0, $staleTtl);
        $this->bulkUrl = rtrim($url, '/') . '/ofrep/v1/evaluate/flags';
        $this->namespace = 'v1:' . hash('xxh128', $token);
        $this->cache = $cache ?? (ApcuCache::isAvailable() ? new ApcuCache() : new NullCache());
        $this->transport = $transport ?? new CurlTransport();
        $this->clock = $clock !== null ? \Closure::fromCallable($clock) : static fn (): float => microtime(true);
        // Without a cache (NullCache) the breaker still protects a long-lived process.
        $this->breaker = $breaker ?? new CircuitBreaker(
            $this->cache instanceof NullCache ? new ArrayCache($this->clock) : $this->cache,
            hash('xxh128', $this->bulkUrl . "\0" . $token),
            $breakerThreshold,
            $breakerCooldown,
            $this->clock,
        );
        $this->contextResolverInput = static fn (): array => [];
        $this->unsendable = new \WeakMap();
    }

    /**
     * Builds a client from the Laravel-style configuration array (`config/flagd.php`).
     * A non-empty `ca_file` gives the default transport the authorities to trust; a
     * `$transport` passed in is used as it is.
     *
     * @param array<string, mixed> $config
     */
    public static function fromConfig(array $config, ?object $logger = null, ?Transport $transport = null): self
    {
        $caFile = $config['ca_file'] ?? null;
        if ($transport === null && is_string($caFile) && $caFile !== '') {
            $transport = new CurlTransport(caFile: $caFile);
        }
        $setting = $config['cache'] ?? 'auto';
        $cacheName = self::cacheName($setting);
        $cache = match ($cacheName) {
            'none', 'null' => new NullCache(),
            'array' => new ArrayCache(),
            // `apcu`, `auto` and anything unknown: APCu where it is enabled (the CLI needs
            // apc.enable_cli=1).
            default => ApcuCache::isAvailable() ? new ApcuCache() : new NullCache(),
        };

        $client = new self(
            url: (string) ($config['url'] ?? 'http://127.0.0.1:8013'),
            token: (string) ($config['token'] ?? ''),
            cacheTtl: (float) ($config['cache_ttl'] ?? 1.0),
            connectTimeoutMs: (int) ($config['connect_timeout_ms'] ?? 50),
            timeoutMs: (int) ($config['timeout_ms'] ?? 250),
            cache: $cache,
            transport: $transport,
            logger: $logger,
            strict: (bool) ($config['strict'] ?? false),
            breakerThreshold: (int) ($config['breaker_threshold'] ?? 3),
            breakerCooldown: (float) ($config['breaker_cooldown'] ?? 5.0),
            staleTtl: (int) ($config['stale_ttl'] ?? self::DEFAULT_STALE_TTL),
        );
        static $toldNoApcu = false;
        if ($cacheName === 'apcu' && $cache instanceof NullCache && !$toldNoApcu) {
            $toldNoApcu = true;
            $client->log('warning', 'flagd: cache is `apcu` but APCu is not enabled here (the CLI needs apc.enable_cli=1); using no shared cache');
        }
        if ($cacheName === null) {
            // Said, not silently `auto`: a typo for `none` would otherwise cache anyway.
            $client->log('warning', sprintf(
                'flagd: cache (FLAGD_CACHE) is `%s`, which is not one of `auto`, `apcu`, `none`; using `auto`',
                is_string($setting) ? $setting : get_debug_type($setting),
            ));
        }

        return $client;
    }

    /** The `cache` setting in lower case, empty read as unset (`auto`); null when it names no cache. */
    private static function cacheName(mixed $setting): ?string
    {
        if (!is_string($setting)) {
            return null;
        }
        $name = strtolower(trim($setting));
        if ($name === '') {
            return 'auto';
        }

        return in_array($name, self::CACHE_NAMES, true) ? $name : null;
    }

    // ---- typed evaluation -------------------------------------------------------------

    public function isEnabled(string $key, ?Context $context = null, bool $default = false): bool
    {
        return $this->evaluate($key, $default, $context, 'boolean')->value;
    }

    public function boolean(string $key, bool $default, ?Context $context = null): bool
    {
        return $this->evaluate($key, $default, $context, 'boolean')->value;
    }

    public function string(string $key, string $default, ?Context $context = null): string
    {
        return $this->evaluate($key, $default, $context, 'string')->value;
    }

    public function int(string $key, int $default, ?Context $context = null): int
    {
        return $this->evaluate($key, $default, $context, 'integer')->value;
    }

    public function float(string $key, float $default, ?Context $context = null): float
    {
        return $this->evaluate($key, $default, $context, 'float')->value;
    }

    /**
     * A JSON object (or array) flag, decoded to a PHP array.
     *
     * @param array<mixed> $default
     * @return array<mixed>
     */
    public function object(string $key, array $default, ?Context $context = null): array
    {
        return $this->evaluate($key, $default, $context, 'object')->value;
    }

    /** Value, variant, reason and error of one flag, of any type. */
    public function details(string $key, ?Context $context = null, mixed $default = null): EvaluationDetails
    {
        return $this->evaluate($key, $default, $context, null);
    }

    /**
     * Every flag's value for a context. Flags that failed to evaluate are left out; a flag
     * served without a value (the caller's default applies) is listed with `null`.
     *
     * @return array<string, mixed>
     */
    public function all(?Context $context = null): array
    {
        $values = [];
        foreach ($this->allDetails($context) as $key => $details) {
            if (!$details->isError()) {
                $values[$key] = $details->value;
            }
        }

        return $values;
    }

    /**
     * The keys of every flag flagd knows for the environment, from the same bulk answer as
     * `all()`: flags that failed to evaluate for this context included. Empty when there
     * is no answer to read (flagd unreachable with nothing cached, a refused token).
     *
     * @return list<string>
     */
    public function flagKeys(?Context $context = null): array
    {
        return array_map('strval', array_keys($this->resultFor($context ?? $this->currentContext())['flags']));
    }

    /**
     * Whether flagd's answer for the context lists the flag, the last answer kept through
     * an outage included: null when there is no answer to read (as `flagKeys()`). Never
     * throws for a key flagd lacks, in strict mode neither.
     */
    public function knows(string $key, ?Context $context = null): ?bool
    {
        $result = $this->resultFor($context ?? $this->currentContext());
        if (isset($result['flags'][$key])) {
            return true;
        }
        $answered = $result['error'] === null || $result['flags'] !== [];

        return $answered ? false : null;
    }

    /**
     * Every flag's details for a context, those that failed to evaluate for it included (with
     * their error). A flag failing is part of the answer here, not a failure of the call: in
     * strict mode neither this nor `all()` throws for it.
     *
     * @return array<string, EvaluationDetails>
     */
    public function allDetails(?Context $context = null): array
    {
        $result = $this->resultFor($context ?? $this->currentContext());
        $details = [];
        foreach ($result['flags'] as $key => $item) {
            $details[(string) $key] = $this->detailsFromItem((string) $key, $item, null, null, $result['stale'], false);
        }

        return $details;
    }

    // ---- context -----------------------------------------------------------------------

    /**
     * Sets how the context is found when a call passes none. The resolver returns a
     * Context, a ProvidesFlagdContext, a company id, or null (anything else: see
     * `contextFrom()`); it receives whatever the input callable returns as arguments (the
     * Laravel provider passes the current request).
     */
    public function resolveContextUsing(?callable $resolver): void
    {
        $this->contextResolver = $resolver !== null ? \Closure::fromCallable($resolver) : null;
        $this->resolvedContext = null;
    }

    /** @param callable(): array<int, mixed> $input */
    public function setContextResolverInput(callable $input): void
    {
        $this->contextResolverInput = \Closure::fromCallable($input);
        $this->resolvedContext = null;
    }

    /**
     * The context used when a call passes none. Resolved once per request: the result is
     * kept while the resolver's input (the request object) stays the same.
     */
    public function currentContext(): Context
    {
        if ($this->contextResolver === null) {
            return Context::empty();
        }
        $input = ($this->contextResolverInput)();
        $subject = $input[0] ?? null;
        if ($this->resolvedContext !== null && $this->resolvedFor === $subject) {
            return $this->resolvedContext;
        }
        $failed = false;
        try {
            $resolved = $this->contextFrom(($this->contextResolver)(...$input), 'the context resolver returned');
        } catch (\Throwable $e) {
            if ($this->strict) {
                throw $e instanceof FlagdException ? $e : new FlagdException('flagd: the context resolver failed: ' . $e->getMessage(), 0, $e);
            }
            $this->log('warning', 'flagd: the context resolver failed, using an empty context', ['exception' => $e]);
            $resolved = Context::empty();
            $failed = true;
        }
        // An empty answer is not kept: a check made before the user is known (a global
        // middleware ahead of the session) must not fix the whole request's context. A
        // refused one is: asking again would give the same.
        if ($failed || $resolved->toArray() !== [] || isset($this->unsendable[$resolved])) {
            $this->resolvedFor = is_object($subject) || $subject === null ? $subject : null;
            $this->resolvedContext = $resolved;
        }

        return $resolved;
    }

    /**
     * A Context from a Context, a model implementing ProvidesFlagdContext, a company id (an
     * int or a non-empty string), or null (the empty context).
     *
     * @throws InvalidContextException for anything else
     */
    public static function toContext(mixed $value): Context
    {
        return match (true) {
            $value instanceof Context => $value,
            $value instanceof ProvidesFlagdContext => $value->toFlagdContext(),
            is_int($value), is_string($value) && $value !== '' => Context::company($value),
            $value === null => Context::empty(),
            default => throw new InvalidContextException(sprintf(
                '%s, not a context (one of: a Context, a ProvidesFlagdContext, a company id as an int or a non-empty string, null)',
                self::typeOf($value),
            )),
        };
    }

    /**
     * The context for what a resolver returned or `@flag` was given, as `toContext()` reads
     * it (`$from` says where it came from, for the log: "the context resolver returned").
     * Anything else is not taken for "no context": its flags answer the caller's defaults
     * with `INVALID_CONTEXT`, as a context flagd refuses does, and it is logged once per type
     * in a request; in strict mode it throws.
     *
     * @throws FlagdException in strict mode, for a value that is no context
     */
    public function contextFrom(mixed $value, string $from = 'the caller gave'): Context
    {
        try {
            return self::toContext($value);
        } catch (InvalidContextException $e) {
            $message = sprintf('flagd: %s %s', $from, $e->getMessage());
            if ($this->strict) {
                throw new FlagdException($message, 0, $e);
            }
            $kind = self::typeOf($value);
            if (!isset($this->reportedKinds[$kind])) {
                $this->reportedKinds[$kind] = true;
                $this->log('warning', $message . '; serving defaults (INVALID_CONTEXT)');
            }
            // A context of its own, kept as refused: evaluating it asks nothing of flagd.
            $refused = Context::empty();
            $this->unsendable[$refused] = ['flags' => [], 'stale' => false, 'error' => $message, 'code' => EvaluationDetails::INVALID_CONTEXT];

            return $refused;
        }
    }

    private static function typeOf(mixed $value): string
    {
        return $value === '' ? 'an empty string' : get_debug_type($value);
    }

    /** Forgets what this request memoized (call between requests in long-lived workers). */
    public function flush(): void
    {
        $this->memo = [];
        $this->unsendable = new \WeakMap();
        $this->reportedKinds = [];
        $this->resolvedContext = null;
        $this->resolvedFor = null;
    }

    public function breaker(): CircuitBreaker
    {
        return $this->breaker;
    }

    /** HTTP requests made by this client object. */
    public function requestCount(): int
    {
        return $this->requests;
    }

    // ---- evaluation ----------------------------------------------------------------------

    /** @param 'boolean'|'string'|'integer'|'float'|'object'|null $type */
    private function evaluate(string $key, mixed $default, ?Context $context, ?string $type): EvaluationDetails
    {
        $result = $this->resultFor($context ?? $this->currentContext());
        $item = $result['flags'][$key] ?? null;
        if ($item === null) {
            [$code, $message] = $result['error'] !== null && $result['flags'] === []
                ? [$result['code'] ?? EvaluationDetails::GENERAL, $result['error']]
                : [EvaluationDetails::FLAG_NOT_FOUND, "flag `{$key}` not found"];

            return $this->failed($key, $default, $code, $message, $result['error'] === null);
        }

        return $this->detailsFromItem($key, $item, $default, $type, $result['stale']);
    }

    /**
     * @param array<string, mixed> $item
     */
    private function detailsFromItem(
        string $key,
        array $item,
        mixed $default,
        ?string $type,
        bool $stale,
        bool $throwable = true,
    ): EvaluationDetails {
        if (isset($item['errorCode'])) {
            return $this->failed(
                $key,
                $default,
                (string) $item['errorCode'],
                (string) ($item['errorDetails'] ?? 'evaluation failed'),
                $throwable,
            );
        }
        $metadata = is_array($item['metadata'] ?? null) ? $item['metadata'] : [];
        $variant = isset($item['variant']) ? (string) $item['variant'] : null;
        $reason = $stale ? EvaluationDetails::REASON_STALE : (string) ($item['reason'] ?? 'UNKNOWN');
        if (!array_key_exists('value', $item)) {
            // A success without a value (a flag with no off variant that nothing served, say):
            // OFREP's answer for "use the code default". Not an error, in strict mode neither.
            return new EvaluationDetails($key, $default, $variant, $reason, null, null, $metadata);
        }
        $value = $item['value'];
        if ($type !== null) {
            $converted = self::convert($value, $type);
            if ($converted === null) {
                return $this->failed(
                    $key,
                    $default,
                    EvaluationDetails::TYPE_MISMATCH,
                    sprintf('flag `%s` is %s, asked for %s', $key, get_debug_type($value), $type),
                    true,
                );
            }
            $value = $converted[0];
        }

        return new EvaluationDetails($key, $value, $variant, $reason, null, null, $metadata);
    }

    /** @return array{0: mixed}|null the value in the asked type, or null when it is not one */
    private static function convert(mixed $value, string $type): ?array
    {
        return match ($type) {
            'boolean' => is_bool($value) ? [$value] : null,
            'string' => is_string($value) ? [$value] : null,
            'integer' => match (true) {
                is_int($value) => [$value],
                is_float($value) && floor($value) === $value && abs($value) < 2 ** 53 => [(int) $value],
                default => null,
            },
            'float' => is_float($value) || is_int($value) ? [(float) $value] : null,
            'object' => is_array($value) ? [$value] : null,
            default => [$value],
        };
    }

    private function failed(string $key, mixed $default, string $code, string $message, bool $throwable): EvaluationDetails
    {
        if ($this->strict && $throwable) {
            throw new FlagdException("flagd: {$code}: {$message}");
        }

        return new EvaluationDetails($key, $default, null, EvaluationDetails::REASON_ERROR, $code, $message);
    }

    /**
     * The bulk answer for a context: memoized, else from the shared cache while fresh,
     * else from the service, else the stale entry, else nothing.
     *
     * @return array{flags: array<string, array<string, mixed>>, stale: bool, error: ?string, code?: string}
     */
    private function resultFor(Context $context): array
    {
        if (isset($this->unsendable[$context])) {
            return $this->unsendable[$context];
        }
        try {
            return $this->lookUp($context);
        } catch (InvalidContextException $e) {
            return $this->unsendable[$context] ??= $this->refuseContext($e);
        }
    }

    /** @return array{flags: array{}, stale: false, error: string, code: string} */
    private function refuseContext(InvalidContextException $e): array
    {
        if ($this->strict) {
            throw new FlagdException('flagd: ' . $e->getMessage(), 0, $e);
        }
        $this->log('warning', 'flagd: ' . $e->getMessage() . '; serving defaults', ['exception' => $e]);

        return ['flags' => [], 'stale' => false, 'error' => $e->getMessage(), 'code' => EvaluationDetails::INVALID_CONTEXT];
    }

    /**
     * @return array{flags: array<string, array<string, mixed>>, stale: bool, error: ?string, code?: string}
     *
     * @throws InvalidContextException
     */
    private function lookUp(Context $context): array
    {
        $contextKey = $context->cacheKey();
        if (isset($this->memo[$contextKey])) {
            return $this->memo[$contextKey];
        }

        $entryKey = $this->namespace . ':' . $contextKey;
        $entry = $this->cache->get($entryKey);
        if (!is_array($entry) || !isset($entry['flags'], $entry['at'])) {
            $entry = null;
        }
        $now = ($this->clock)();
        if ($entry !== null && $now - $entry['at'] < $this->cacheTtl) {
            return $this->memo[$contextKey] = ['flags' => $entry['flags'], 'stale' => false, 'error' => null];
        }

        if (!$this->breaker->allowsRequest()) {
            return $this->memo[$contextKey] = $this->fallback($entry, 'the circuit breaker is open after repeated failures');
        }

        // Only one worker revalidates an expired entry; the others keep serving it meanwhile
        // (unless flagd refused the token: then nobody serves what it said before). Past
        // `staleTtl` an entry is kept only for its ETag, not to be served: they ask flagd
        // themselves. Within the lock's lifetime past the TTL it is served whatever
        // `staleTtl`: all workers waiting out a hanging flagd at once is what the lock is for.
        $lockKey = 'lock:' . $entryKey;
        $locked = false;
        if ($entry !== null && $this->cache->isShared()) {
            $locked = $this->cache->add($lockKey, 1, self::LOCK_TTL);
            if (!$locked && $this->isServable($entry, $now, max($this->staleTtl, self::LOCK_TTL))) {
                $refused = $this->tokenRefusal();

                return $this->memo[$contextKey] = $refused === null
                    ? ['flags' => $entry['flags'], 'stale' => false, 'error' => null]
                    : ['flags' => [], 'stale' => false, 'error' => $refused, 'code' => EvaluationDetails::GENERAL];
            }
        }

        try {
            return $this->memo[$contextKey] = $this->fetch($context, $entryKey, $entry);
        } finally {
            if ($locked) {
                $this->cache->delete($lockKey);
            }
        }
    }

    /**
     * Whether an entry may still be served, `$pastFreshness` seconds after its `cacheTtl`
     * ran out. Its age counts from when flagd last gave or confirmed it (a `304`).
     *
     * @param array{at: float} $entry
     */
    private function isServable(array $entry, float $now, int $pastFreshness): bool
    {
        return $now - $entry['at'] < $this->cacheTtl + $pastFreshness;
    }

    /**
     * How long the cache keeps an entry (and the token-refusal marker, which must outlive
     * every entry it withholds): its fresh period, then the longer of the stale window and
     * the time it is worth keeping for an ETag revalidation. Never 0, which caches read as
     * "forever".
     */
    private function keepSeconds(): int
    {
        $seconds = ceil(max(0.0, $this->cacheTtl)) + max($this->staleTtl, self::KEEP_FOR_REVALIDATION);

        return $seconds < self::MAX_KEEP ? (int) $seconds : self::MAX_KEEP;
    }

    /**
     * @param array{flags: array<string, array<string, mixed>>, etag: ?string, at: float}|null $entry
     * @return array{flags: array<string, array<string, mixed>>, stale: bool, error: ?string}
     */
    private function fetch(Context $context, string $entryKey, ?array $entry): array
    {
        $headers = [
            'Content-Type' => 'application/json',
            'Accept' => 'application/json',
            'Authorization' => 'Bearer ' . $this->token,
            'User-Agent' => 'flagd-php',
        ];
        if ($entry !== null && isset($entry['etag']) && $entry['etag'] !== '') {
            $headers['If-None-Match'] = $entry['etag'];
        }
        $body = $context->requestBody();

        $this->requests++;
        $started = hrtime(true);
        try {
            $response = $this->transport->post($this->bulkUrl, $headers, $body, $this->connectTimeoutMs, $this->timeoutMs);
        } catch (TransportException $e) {
            return $this->failure($entry, sprintf(
                'flagd unreachable at %s: %s after %.1f ms',
                $this->bulkUrl,
                $e->getMessage(),
                (hrtime(true) - $started) / 1e6,
            ));
        }

        $status = $response->status;
        if ($status === 304 && $entry !== null) {
            $this->breaker->recordSuccess();
            $this->cache->delete($this->refusedKey());
            // Another worker may have stored a newer answer while this request was in flight
            // (one that could not wait for the lock, or came after it expired): the 304 only
            // confirms the copy read before sending, and writing that back would replace the
            // newer flags with older ones marked fresh.
            $current = $this->newerEntry($entryKey, $entry);
            if ($current !== null) {
                return ['flags' => $current['flags'], 'stale' => false, 'error' => null];
            }
            $entry['at'] = ($this->clock)();
            $entry['etag'] = $response->header('etag') ?? $entry['etag'];
            $this->cache->set($entryKey, $entry, $this->keepSeconds());

            return ['flags' => $entry['flags'], 'stale' => false, 'error' => null];
        }
        if ($status === 200) {
            $flags = self::parseBulk($response->body);
            if ($flags === null) {
                return $this->failure($entry, 'flagd answered 200 with a body that is not an OFREP bulk evaluation');
            }
            $this->cache->set(
                $entryKey,
                ['flags' => $flags, 'etag' => $response->header('etag'), 'at' => ($this->clock)()],
                $this->keepSeconds(),
            );
            $this->breaker->recordSuccess();
            $this->cache->delete($this->refusedKey());

            return ['flags' => $flags, 'stale' => false, 'error' => null];
        }
        if ($status === 429) {
            $wait = self::retryAfterSeconds($response->header('retry-after'), ($this->clock)()) ?? $this->breaker->cooldown;
            $this->breaker->openFor($wait);

            return $this->failure($entry, sprintf('flagd is rate limiting (429): no requests for %.0f s (Retry-After)', $wait), false);
        }
        if ($status === 401 || $status === 403) {
            $message = $status === 401
                ? 'flagd refused the token (401 Unauthorized): FLAGD_TOKEN is missing, unknown or revoked'
                : 'flagd refused the token (403 Forbidden): FLAGD_TOKEN must be an `evaluate` token for one environment';
            $message .= self::errorSuffix($response);
            // Defaults, never the last known values: a revoked token must stop serving flags
            // at once, not for `staleTtl`. The refusal is shared (the breaker-open path reads
            // it); the entry is kept, so once the token works again a 304 revalidates it.
            $this->cache->set($this->refusedKey(), $message, $this->keepSeconds());

            return $this->failure(null, $message, true, 'error');
        }
        if ($status === 400 || $status === 413) {
            // This context was refused (malformed, or over the body limit): the service is
            // fine and answers other contexts, so this must not open the breaker for them.
            $this->breaker->recordSuccess();
            $message = sprintf('flagd refused the evaluation context (%d)', $status) . self::errorSuffix($response);

            return $this->failure($entry, $message, false, code: EvaluationDetails::INVALID_CONTEXT);
        }

        return $this->failure($entry, sprintf('flagd answered HTTP %d', $status) . self::errorSuffix($response));
    }

    /**
     * The entry now cached under `$entryKey` when another worker replaced `$revalidated`
     * with it (another answer, or the same one stored or confirmed later); null when it is
     * still the one revalidated, or gone. A per-process cache gives back what this worker
     * read, and `NullCache` nothing: both refresh as before.
     *
     * @param array{flags: array<string, array<string, mixed>>, etag: ?string, at: float} $revalidated
     * @return array{flags: array<string, array<string, mixed>>, etag: ?string, at: float}|null
     */
    private function newerEntry(string $entryKey, array $revalidated): ?array
    {
        $current = $this->cache->get($entryKey);
        if (!is_array($current) || !isset($current['flags'], $current['at'])) {
            return null;
        }
        if (($current['etag'] ?? null) !== ($revalidated['etag'] ?? null) || $current['at'] > $revalidated['at']) {
            return $current;
        }

        return null;
    }

    /**
     * @param array{flags: array<string, array<string, mixed>>, etag: ?string, at: float}|null $entry
     * @return array{flags: array<string, array<string, mixed>>, stale: bool, error: string, code?: string}
     */
    private function failure(
        ?array $entry,
        string $message,
        bool $countsForBreaker = true,
        string $level = 'warning',
        string $code = EvaluationDetails::GENERAL,
    ): array {
        $wasOpen = $this->breaker->isOpen();
        if ($countsForBreaker) {
            $this->breaker->recordFailure();
        }
        $result = $this->fallback($entry, $message, $code);
        if ($this->strict) {
            throw new FlagdException($message);
        }
        $context = ['url' => $this->bulkUrl, 'stale' => $result['stale']];
        $this->log($level, $result['error'] . ($result['stale'] ? '; serving the last known values' : '; serving defaults'), $context);
        if (!$wasOpen && $this->breaker->isOpen() && $countsForBreaker) {
            $this->log('warning', sprintf('flagd: circuit breaker open for %.1f s, no requests until then', $this->breaker->cooldown), $context);
        }

        return $result;
    }

    /**
     * The last known answer while it is within `staleTtl` past its freshness, else nothing
     * (the caller's default).
     *
     * @param array{flags: array<string, array<string, mixed>>, at: float}|null $entry
     * @return array{flags: array<string, array<string, mixed>>, stale: bool, error: string, code: string}
     */
    private function fallback(?array $entry, string $message, string $code = EvaluationDetails::GENERAL): array
    {
        if ($entry !== null && !$this->isServable($entry, ($this->clock)(), $this->staleTtl)) {
            // Kept for its ETag only: saying so explains defaults where STALE was expected.
            $message .= sprintf('; the last known values are past staleTtl (%d s)', $this->staleTtl);
            $entry = null;
        }
        if ($entry !== null) {
            $refused = $this->tokenRefusal();
            if ($refused === null) {
                return ['flags' => $entry['flags'], 'stale' => true, 'error' => $message, 'code' => $code];
            }
            $message .= '; no last known values while the token is refused: ' . $refused;
        }

        return ['flags' => [], 'stale' => false, 'error' => $message, 'code' => $code];
    }

    /** Where the last 401/403 for this token is kept, until a success clears it. */
    private function refusedKey(): string
    {
        return $this->namespace . ':token-refused';
    }

    /** Why flagd last refused this token (401/403), or null when it has not since it last answered. */
    private function tokenRefusal(): ?string
    {
        $refused = $this->cache->get($this->refusedKey());

        return is_string($refused) ? $refused : null;
    }

    /**
     * Flags by key, or null for anything but a bulk evaluation. An item whose fields have the
     * wrong types becomes that flag's error, so one bad flag does not take the others down.
     *
     * @return array<string, array<string, mixed>>|null
     */
    private static function parseBulk(string $body): ?array
    {
        try {
            // PHP's default depth: the server accepts object values nested about as deep as its
            // own request limit (64), and the answer wraps each in three more levels.
            $decoded = json_decode($body, true, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            return null;
        }
        if (!is_array($decoded) || !isset($decoded['flags']) || !is_array($decoded['flags'])) {
            return null;
        }
        $flags = [];
        foreach ($decoded['flags'] as $item) {
            if (!is_array($item) || !isset($item['key']) || !is_string($item['key'])) {
                return null;
            }
            $flags[$item['key']] = self::checkedItem($item['key'], $item);
        }

        return $flags;
    }

    /**
     * @param array<string, mixed> $item
     * @return array<string, mixed> the item, or an error item naming the field that is wrong
     */
    private static function checkedItem(string $key, array $item): array
    {
        foreach (self::FIELD_TYPES as $field => $isValid) {
            if (isset($item[$field]) && !$isValid($item[$field])) {
                return [
                    'key' => $key,
                    'errorCode' => EvaluationDetails::PARSE_ERROR,
                    'errorDetails' => sprintf('flagd answered a malformed evaluation: `%s` is %s', $field, get_debug_type($item[$field])),
                ];
            }
        }

        return $item;
    }

    private static function errorSuffix(Response $response): string
    {
        $decoded = json_decode($response->body, true);
        $message = $decoded['error']['message'] ?? $decoded['errorDetails'] ?? null;

        return is_string($message) ? ': ' . $message : '';
    }

    /** Seconds from a `Retry-After` value (delay seconds or an HTTP date), capped at 10 minutes. */
    public static function retryAfterSeconds(?string $value, float $now): ?float
    {
        if ($value === null || trim($value) === '') {
            return null;
        }
        $value = trim($value);
        if (ctype_digit($value)) {
            $seconds = (float) $value;
        } else {
            $at = strtotime($value);
            if ($at === false) {
                return null;
            }
            $seconds = $at - $now;
        }

        return min(600.0, max(0.0, $seconds));
    }

    /** @param array<string, mixed> $context */
    private function log(string $level, string $message, array $context = []): void
    {
        if ($this->logger === null) {
            return;
        }
        try {
            if (method_exists($this->logger, $level)) {
                $this->logger->{$level}($message, $context);
            } elseif (method_exists($this->logger, 'log')) {
                $this->logger->log($level, $message, $context);
            }
        } catch (\Throwable) {
            // A failing logger must not break the page either.
        }
    }
}
