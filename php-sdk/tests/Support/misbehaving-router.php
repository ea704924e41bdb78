<?php

declare(strict_types=1);

// Router for `php -S`: the first path segment picks how to misbehave.
$mode = explode('/', trim((string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH), '/'))[0];
switch ($mode) {
    case 'ready':
    case 'healthz':
        echo 'ok';
        break;
    case '500':
        http_response_code(500);
        header('Content-Type: text/plain');
        echo 'internal error';
        break;
    case 'garbage':
        header('Content-Type: application/json');
        echo '{"flags": [{"key": ';
        break;
    case 'html':
        header('Content-Type: text/html');
        echo '<html><body>502 Bad Gateway</body></html>';
        break;
    case 'huge':
        // An error page far larger than any answer: 4 MiB, sent in pieces.
        http_response_code(502);
        header('Content-Type: text/html');
        for ($piece = 0; $piece < 64; $piece++) {
            echo str_repeat('x', 65536);
        }
        break;
    case '429':
        http_response_code(429);
        header('Retry-After: 120');
        break;
    default:
        http_response_code(404);
}
