#!/bin/sh
# Builds the "app": a tiny shell program, stamped with its version.
set -e
version=$1
mkdir -p out
cat > out/app <<APP
#!/bin/sh
echo "app $version (\$*) as \$(id -u):\$(id -g) on \$(hostname)"
cat /etc/app/config.txt
APP
chmod 0755 out/app
date >> /root/.cache/builds
echo "built app $version (build number $(wc -l < /root/.cache/builds) in this cache)"
