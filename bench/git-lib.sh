# Shared by bench/git.sh and bench/git-refs.sh (sourced): ports, and git http-backend behind nginx + fcgiwrap.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# git_server WORK LOG_FORMAT PORT[:RATE]...: fcgiwrap, and an nginx.conf with one git http-backend server per port
# (serving WORK/repos, optionally at nginx limit_rate RATE), logging to WORK/logs/access.log; starts both and adds
# their pids to the caller's pids array.
git_server() {
  local work=$1 format=$2; shift 2
  fcgiwrap -s "unix:$work/fcgi.sock" & pids+=($!)
  {
    echo "daemon off; master_process off; user root; pid $work/nginx.pid; error_log $work/logs/nginx.error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "  log_format counted '$format';"
    echo "  access_log $work/logs/access.log counted;"
    echo "  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;"
    echo "  client_max_body_size 0;"
    for spec in "$@"; do
      local port=${spec%%:*} rate=""
      [ "$spec" != "$port" ] && rate="limit_rate ${spec#*:};"
      echo "  server { listen 127.0.0.1:$port; location / { $rate include /etc/nginx/fastcgi_params; fastcgi_pass unix:$work/fcgi.sock;"
      echo "    fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend; fastcgi_param GIT_PROJECT_ROOT $work/repos;"
      echo "    fastcgi_param GIT_HTTP_EXPORT_ALL \"\"; fastcgi_param PATH_INFO \$uri; fastcgi_param GIT_PROTOCOL \$http_git_protocol; } }"
    done
    echo "}"
  } > "$work/nginx.conf"
  nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/nginx.error.log" & pids+=($!)
}
