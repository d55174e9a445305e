/* A forger run inside containers by tests/security/test_networks.py.
 *
 *   spoof send SRC DST PORT TEXT   one UDP datagram from SRC (any address:
 *                                  a raw socket, IPPROTO_RAW, needs only the
 *                                  default CAP_NET_RAW) to DST:PORT; IPv4
 *                                  or IPv6 (SRC and DST of one family)
 *   spoof listen PORT              print "SOURCE TEXT" for every datagram
 *                                  that arrives on PORT (IPv4 and IPv6),
 *                                  one line each
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port)};
    char buf[512], addr[INET6_ADDRSTRLEN];
    int off = 0;
    int s = socket(AF_INET6, SOCK_DGRAM, 0); /* dual stack: IPv4 as ::ffff:a.b.c.d */
    if (s < 0 || setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0 ||
        bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("listen");
        return 1;
    }
    for (;;) {
        struct sockaddr_in6 from;
        socklen_t len = sizeof from;
        const char *shown;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0)
            return 1;
        inet_ntop(AF_INET6, &from.sin6_addr, addr, sizeof addr);
        shown = strncmp(addr, "::ffff:", 7) == 0 ? addr + 7 : addr;
        printf("%s %.*s\n", shown, (int)n, buf);
        fflush(stdout);
    }
}

static unsigned long sum16(const void *p, size_t n, unsigned long acc)
{
    const unsigned char *b = p;
    for (size_t i = 0; i + 1 < n; i += 2)
        acc += (unsigned long)(b[i] << 8 | b[i + 1]);
    if (n & 1)
        acc += (unsigned long)(b[n - 1] << 8);
    return acc;
}

static int send_from6(const char *src, const char *dst, int port, const char *text)
{
    unsigned char pkt[512];
    size_t n = strlen(text);
    struct ip6_hdr *ip = (struct ip6_hdr *)pkt;
    struct udphdr *udp = (struct udphdr *)(pkt + sizeof *ip);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6};
    unsigned long acc;
    unsigned char pseudo[8] = {0};
    int s;

    if (n > sizeof pkt - sizeof *ip - sizeof *udp)
        return 2;
    memset(pkt, 0, sizeof *ip + sizeof *udp);
    memcpy(pkt + sizeof *ip + sizeof *udp, text, n);
    ip->ip6_flow = htonl(6u << 28);
    ip->ip6_plen = htons((unsigned short)(sizeof *udp + n));
    ip->ip6_nxt = IPPROTO_UDP;
    ip->ip6_hlim = 64;
    if (inet_pton(AF_INET6, src, &ip->ip6_src) != 1 || inet_pton(AF_INET6, dst, &ip->ip6_dst) != 1)
        return 2;
    udp->source = htons(40000);
    udp->dest = htons((unsigned short)port);
    udp->len = htons((unsigned short)(sizeof *udp + n));
    /* the UDP checksum is mandatory over IPv6: pseudo-header + UDP */
    pseudo[2] = (unsigned char)((sizeof *udp + n) >> 8);
    pseudo[3] = (unsigned char)(sizeof *udp + n);
    pseudo[7] = IPPROTO_UDP;
    acc = sum16(&ip->ip6_src, 32, 0);
    acc = sum16(pseudo, sizeof pseudo, acc);
    acc = sum16(udp, sizeof *udp + n, acc);
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    udp->check = htons((unsigned short)~acc);
    if (udp->check == 0)
        udp->check = 0xffff;
    to.sin6_addr = ip->ip6_dst;
    s = socket(AF_INET6, SOCK_RAW, IPPROTO_RAW); /* the header is ours (IPV6_HDRINCL) */
    if (s < 0 || sendto(s, pkt, sizeof *ip + sizeof *udp + n, 0, (struct sockaddr *)&to,
                        sizeof to) < 0) {
        perror("send");
        return 1;
    }
    printf("sent\n");
    return 0;
}

static int send_from(const char *src, const char *dst, int port, const char *text)
{
    unsigned char pkt[512];
    size_t n = strlen(text);
    struct iphdr *ip = (struct iphdr *)pkt;
    struct udphdr *udp = (struct udphdr *)(pkt + sizeof *ip);
    struct sockaddr_in to = {.sin_family = AF_INET};
    int s;

    if (n > sizeof pkt - sizeof *ip - sizeof *udp)
        return 2;
    memset(pkt, 0, sizeof *ip + sizeof *udp);
    memcpy(pkt + sizeof *ip + sizeof *udp, text, n);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((unsigned short)(sizeof *ip + sizeof *udp + n));
    if (inet_pton(AF_INET, src, &ip->saddr) != 1 || inet_pton(AF_INET, dst, &ip->daddr) != 1)
        return 2;
    udp->source = htons(40000);
    udp->dest = htons((unsigned short)port);
    udp->len = htons((unsigned short)(sizeof *udp + n));
    udp->check = 0; /* no checksum: allowed over IPv4 */
    to.sin_addr.s_addr = ip->daddr;
    s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* the kernel fills id and checksum */
    if (s < 0 || sendto(s, pkt, sizeof *ip + sizeof *udp + n, 0, (struct sockaddr *)&to,
                        sizeof to) < 0) {
        perror("send");
        return 1;
    }
    printf("sent\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "listen") == 0)
        return listen_on(atoi(argv[2]));
    if (argc == 6 && strcmp(argv[1], "send") == 0 && strchr(argv[2], ':'))
        return send_from6(argv[2], argv[3], atoi(argv[4]), argv[5]);
    if (argc == 6 && strcmp(argv[1], "send") == 0)
        return send_from(argv[2], argv[3], atoi(argv[4]), argv[5]);
    fprintf(stderr, "usage: spoof send SRC DST PORT TEXT | spoof listen PORT\n");
    return 2;
}
