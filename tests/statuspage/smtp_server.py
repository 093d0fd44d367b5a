"""A small SMTP server on a thread (RFC 5321: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
keeps what it accepted and can refuse the DATA of chosen messages with a 451, for the
customer-notice tests to send real SMTP through Django's backend."""

from __future__ import annotations

import socketserver
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: Message


@dataclass
class MailState:
    received: list[Received] = field(default_factory=list)
    refuse_data: set[int] = field(default_factory=set)  # 1-based numbers of DATA commands
    slow_data: dict[int, float] = field(default_factory=dict)  # DATA number → seconds to wait
    data_commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Session(socketserver.StreamRequestHandler):
    server: SmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        state = self.server.state
        sender, recipients = "", list[str]()
        self.reply("220 127.0.0.1 test SMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            command = raw.decode(errors="replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 127.0.0.1")
            elif verb == "MAIL":
                sender, recipients = command.partition(":")[2].strip(" <>"), list[str]()
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.partition(":")[2].strip(" <>"))
                self.reply("250 OK")
            elif verb == "DATA":
                with state.lock:
                    state.data_commands += 1
                    refused = state.data_commands in state.refuse_data
                    pause = state.slow_data.get(state.data_commands, 0.0)
                time.sleep(pause)
                if refused:
                    self.reply("451 4.3.0 try again later")
                    continue
                self.reply("354 end with .")
                lines = []
                while (line := self.rfile.readline()) != b".\r\n":
                    if not line:  # the client went away mid-message: nothing is accepted
                        return
                    lines.append(line[1:] if line.startswith(b"..") else line)
                with state.lock:
                    state.received.append(
                        Received(sender, recipients, message_from_bytes(b"".join(lines)))
                    )
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.state = MailState()

    @property
    def port(self) -> int:
        return int(self.server_address[1])
