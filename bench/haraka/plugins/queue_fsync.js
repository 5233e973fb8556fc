// queue_fsync: smtpgate's benchmark queue for Haraka (bench/run-bench).
// Each message is written to its own file in [main] dir of config/queue_fsync.ini and
// fsync'd before the 250, like Postfix's queue file and smtpgate's Maildir store, so the
// three servers do the same durable work per message. Nothing is ever delivered.
const fs = require('node:fs')
const path = require('node:path')

let seq = 0

exports.register = function () {
    this.cfg = this.config.get('queue_fsync.ini')
    this.dir = this.cfg.main.dir
    fs.mkdirSync(this.dir, { recursive: true })
}

exports.hook_queue = function (next, connection) {
    const txn = connection.transaction
    const name = `${process.pid}.${Date.now()}.${seq++}`
    const file = path.join(this.dir, name)
    txn.message_stream.get_data((buf) => {
        fs.open(file, 'wx', 0o600, (err, fd) => {
            if (err) return next(DENYSOFT, 'queue_fsync: open failed')
            fs.write(fd, buf, 0, buf.length, null, (werr) => {
                if (werr) {
                    fs.close(fd, () => {})
                    return next(DENYSOFT, 'queue_fsync: write failed')
                }
                fs.fsync(fd, (serr) => {
                    fs.close(fd, () => {
                        if (serr) return next(DENYSOFT, 'queue_fsync: fsync failed')
                        next(OK, `queued as ${name}`)
                    })
                })
            })
        })
    })
}

// Authenticated (relaying) sessions go through queue_outbound instead of queue: same
// treatment, so nothing is ever handed to Haraka's outbound delivery.
exports.hook_queue_outbound = exports.hook_queue
