<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

use Flagd\Client;
use Flagd\Context;
use Illuminate\Contracts\Queue\Job;

/** A queued job that records what one flag was for company 42, then runs the test's step. */
final class FlagCheckingJob
{
    /** @var list<bool> */
    public static array $seen = [];
    /** @var (\Closure(): void)|null what happens after the first job, before the next */
    public static ?\Closure $afterFirst = null;

    /** @param array{flag: string} $data */
    public function fire(Job $job, array $data): void
    {
        self::$seen[] = app(Client::class)->isEnabled($data['flag'], Context::company(42));
        if (count(self::$seen) === 1 && self::$afterFirst !== null) {
            (self::$afterFirst)();
        }
        $job->delete();
    }
}
