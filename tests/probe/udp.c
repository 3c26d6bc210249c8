/* A tiny UDP server and client for the network tests (busybox has no UDP server).
 *
 *   udp serve PORT            answers each datagram with "<source address> <datagram>"
 *   udp ask HOST PORT TEXT [SOURCE_PORT]
 *                             sends TEXT (from SOURCE_PORT if given), prints the answer;
 *                             exit 1 after 2 s without one
 *
 *   udp dns PORT IP NAME      a DNS server: an A question for NAME gets IP, other types of
 *                             NAME no record, other names NXDOMAIN
 *
 * IPv4 and IPv6 (HOST may be either). Built with `gcc -static` by the tests. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int serve(const char *port) {
    int s = socket(AF_INET6, SOCK_DGRAM, 0);
    int off = 0;
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(port))};
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("bind");
        return 1;
    }
    for (;;) {
        char buf[1500], out[1600], host[INET6_ADDRSTRLEN];
        struct sockaddr_in6 from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
        if (n < 0)
            continue;
        buf[n] = 0;
        inet_ntop(AF_INET6, &from.sin6_addr, host, sizeof host);
        /* An IPv4 client shows as ::ffff:a.b.c.d: print a.b.c.d. */
        const char *h = strncmp(host, "::ffff:", 7) == 0 ? host + 7 : host;
        int m = snprintf(out, sizeof out, "%s %s", h, buf);
        sendto(s, out, m, 0, (struct sockaddr *)&from, len);
    }
}

#include <strings.h>

static int dns(const char *port, const char *ip, const char *name) {
    int s = socket(AF_INET6, SOCK_DGRAM, 0);
    int off = 0;
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(port))};
    struct in_addr addr;
    if (inet_pton(AF_INET, ip, &addr) != 1 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("dns");
        return 1;
    }
    for (;;) {
        unsigned char q[512];
        struct sockaddr_in6 from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, q, sizeof q - 16, 0, (struct sockaddr *)&from, &len);
        if (n < 17)
            continue;
        /* The question: a name from byte 12, then type and class. */
        size_t i = 12;
        char qname[256] = "";
        while (i < (size_t)n && q[i] != 0 && strlen(qname) + q[i] + 2 < sizeof qname) {
            if (qname[0])
                strcat(qname, ".");
            strncat(qname, (const char *)q + i + 1, q[i]);
            i += q[i] + 1;
        }
        int known = strcasecmp(qname, name) == 0;
        if (i + 5 > (size_t)n)
            continue;
        int type = q[i + 1] << 8 | q[i + 2];
        size_t end = i + 5;
        q[2] = 0x81; /* response, recursion desired */
        q[3] = known ? 0x80 : 0x83; /* recursion available, NOERROR or NXDOMAIN */
        q[6] = 0, q[7] = known && type == 1; /* one answer for A */
        q[8] = q[9] = q[10] = q[11] = 0;
        if (known && type == 1) {
            unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
            memcpy(q + end, rr, sizeof rr);
            memcpy(q + end + sizeof rr, &addr, 4);
            end += sizeof rr + 4;
        }
        sendto(s, q, end, 0, (struct sockaddr *)&from, len);
    }
}

static int ask(const char *host, const char *port, const char *text, const char *source) {
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "cannot resolve %s\n", host);
        return 2;
    }
    int s = socket(ai->ai_family, SOCK_DGRAM, 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (source) {
        int on = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(source))};
        if (ai->ai_family != AF_INET || bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("bind");
            return 1;
        }
    }
    if (connect(s, ai->ai_addr, ai->ai_addrlen) != 0 || send(s, text, strlen(text), 0) < 0) {
        perror("send");
        return 1;
    }
    char buf[1600];
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0) {
        perror("recv");
        return 1;
    }
    buf[n] = 0;
    printf("%s\n", buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc == 5 && strcmp(argv[1], "dns") == 0)
        return dns(argv[2], argv[3], argv[4]);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "ask") == 0)
        return ask(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    fprintf(stderr, "usage: udp serve PORT | udp dns PORT IP NAME | udp ask HOST PORT TEXT [SOURCE_PORT]\n");
    return 2;
}
