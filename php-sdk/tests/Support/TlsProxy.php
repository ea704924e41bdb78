<?php

declare(strict_types=1);

namespace Flagd\Tests\Support;

/**
 * nginx terminating TLS on a free port in front of an http:// upstream, with a server
 * certificate for 127.0.0.1 that a private certificate authority (made here with
 * `openssl`) signed. `$caFile` is that authority's certificate, in no system store.
 */
final class TlsProxy
{
    /** @var resource|null */
    private $process;
    public readonly string $url;
    public readonly string $caFile;

    private function __construct(private readonly string $dir, public readonly int $port, string $upstream)
    {
        $this->url = "https://127.0.0.1:{$port}";
        $this->caFile = "{$dir}/ca.pem";
        self::makeCertificates($dir);
        file_put_contents("{$dir}/nginx.conf", self::config($dir, $port, $upstream));
        $this->process = Processes::start(
            [self::nginx(), '-p', "{$dir}/", '-c', "{$dir}/nginx.conf"],
            "{$dir}/nginx.log",
        );
        try {
            Processes::waitUntil(function (): bool {
                if (!proc_get_status($this->process)['running']) {
                    throw new \RuntimeException("nginx exited:\n" . $this->log());
                }

                // Another process could hold the port: this nginx must be the one listening.
                return Processes::acceptsConnections($this->port)
                    && Processes::listensOn(proc_get_status($this->process)['pid'], $this->port);
            }, 10.0, "nginx on port {$port}");
        } catch (\Throwable $e) {
            $this->stop();
            throw $e;
        }
    }

    /** @param string $upstream host:port of the plain-HTTP server behind the proxy */
    public static function start(string $upstream): self
    {
        return new self(Processes::tempDir('tls'), Processes::freePort(), $upstream);
    }

    public function stop(): void
    {
        if ($this->process !== null) {
            Processes::stop($this->process);
            $this->process = null;
        }
    }

    public function log(): string
    {
        return (string) @file_get_contents("{$this->dir}/nginx.log");
    }

    /** Debian installs nginx in /usr/sbin, which is not in every user's PATH. */
    private static function nginx(): string
    {
        foreach (array_merge(explode(':', (string) getenv('PATH')), ['/usr/sbin']) as $dir) {
            if ($dir !== '' && is_executable("{$dir}/nginx")) {
                return "{$dir}/nginx";
            }
        }
        throw new \RuntimeException('no nginx binary: the TLS tests need one (apt-get install nginx-light)');
    }

    private static function makeCertificates(string $dir): void
    {
        $ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
        self::run(array_merge(['openssl', 'req', '-x509'], $ec, ['-days', '1', '-subj', '/CN=flagd test CA', '-keyout', "{$dir}/ca.key", '-out', "{$dir}/ca.pem"]));
        self::run(array_merge(['openssl', 'req'], $ec, ['-subj', '/CN=127.0.0.1', '-keyout', "{$dir}/server.key", '-out', "{$dir}/server.csr"]));
        // curl matches 127.0.0.1 against the subjectAltName; the CN is not read when there is one.
        file_put_contents("{$dir}/server.ext", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
        self::run([
            'openssl', 'x509', '-req', '-in', "{$dir}/server.csr",
            '-CA', "{$dir}/ca.pem", '-CAkey', "{$dir}/ca.key", '-set_serial', '1', '-days', '1',
            '-extfile', "{$dir}/server.ext", '-out', "{$dir}/server.pem",
        ]);
    }

    /**
     * One process (`master_process off`): stopping the child stops nginx, with no workers
     * left behind and none switched to a user that cannot enter the private temp dir.
     */
    private static function config(string $dir, int $port, string $upstream): string
    {
        return <<<NGINX
            daemon off;
            master_process off;
            pid {$dir}/nginx.pid;
            error_log stderr;
            events {}
            http {
                access_log off;
                client_body_temp_path {$dir}/client_body;
                proxy_temp_path {$dir}/proxy;
                fastcgi_temp_path {$dir}/fastcgi;
                uwsgi_temp_path {$dir}/uwsgi;
                scgi_temp_path {$dir}/scgi;
                server {
                    listen 127.0.0.1:{$port} ssl;
                    ssl_certificate {$dir}/server.pem;
                    ssl_certificate_key {$dir}/server.key;
                    location / {
                        proxy_pass http://{$upstream};
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                    }
                }
            }

            NGINX;
    }

    /** @param list<string> $command */
    private static function run(array $command): void
    {
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes);
        if (!is_resource($process)) {
            throw new \RuntimeException('could not start ' . implode(' ', $command));
        }
        $output = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        $status = proc_close($process);
        if ($status !== 0) {
            throw new \RuntimeException(implode(' ', $command) . " exited with {$status}:\n{$output}");
        }
    }
}
