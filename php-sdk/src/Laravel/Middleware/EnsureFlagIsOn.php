<?php

declare(strict_types=1);

namespace Flagd\Laravel\Middleware;

use Flagd\Client;
use Symfony\Component\HttpKernel\Exception\NotFoundHttpException;

/**
 * `->middleware('flag:customer_portal')`: 404 unless the flag is on for the context the
 * resolver gives for this request. While flagd is unreachable the last known value
 * decides, else the flag counts as off.
 */
final class EnsureFlagIsOn
{
    public function __construct(private readonly Client $flags)
    {
    }

    /**
     * @param \Illuminate\Http\Request $request
     */
    public function handle($request, \Closure $next, string $key): mixed
    {
        if (!$this->flags->isEnabled($key)) {
            throw new NotFoundHttpException();
        }

        return $next($request);
    }
}
