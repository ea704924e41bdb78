<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

use Illuminate\Contracts\Queue\Queue as QueueContract;
use Illuminate\Queue\Jobs\SyncJob;
use Illuminate\Queue\Queue;

/** A queue held in memory, so that a real Illuminate\Queue\Worker can run jobs in a test. */
final class MemoryQueue extends Queue implements QueueContract
{
    /** @var list<string> raw payloads, oldest first */
    private array $payloads = [];

    public function size($queue = null)
    {
        return count($this->payloads);
    }

    public function push($job, $data = '', $queue = null)
    {
        return $this->pushRaw((string) json_encode(['job' => $job, 'data' => $data, 'attempts' => 0]), $queue);
    }

    public function pushRaw($payload, $queue = null, array $options = [])
    {
        $this->payloads[] = $payload;

        return null;
    }

    public function later($delay, $job, $data = '', $queue = null)
    {
        return $this->push($job, $data, $queue);
    }

    public function pop($queue = null)
    {
        $payload = array_shift($this->payloads);

        return $payload === null ? null : new SyncJob($this->container, $payload, 'memory', $queue ?? 'default');
    }
}
