/* `isola-agent: ...` lines on stderr: never blocking (a full or dead reader loses the line, the agent
 * goes on), bytes outside printable ASCII escaped, and rate-limited (a burst of 20, then 2 a second). */
#ifndef ISOLA_AGENT_LOG_H
#define ISOLA_AGENT_LOG_H

void log_init(void);
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
