$rt << EOD
"eventfd" 99.55 215.7
"sw_sync" 113.2 265.6
"explicit poll" 118.1 241.5
"explicit wait" 115.8 383.5
"implicit" 128.6 282.7
EOD
$cpu0 << EOD
4.0 1514.7928994082843
64.0 1612.5984251968503
1024.0 946.7920657622908
8192.0 952.9043984005815
EOD
$cpu1 << EOD
4.0 202.69200316706252
64.0 1088.782562466773
1024.0 927.181924932445
8192.0 953.7607375578946
EOD
$cpu2 << EOD
4.0 212.096106048053
64.0 1089.9414582224588
1024.0 1505.830451615868
8192.0 1448.2053775143224
EOD
$cpu3 << EOD
4.0 212.97836938435938
64.0 1094.4555778223114
1024.0 1534.9806768942499
8192.0 944.7388123912638
EOD
$job0 << EOD
64.0 10163.77171215881
1024.0 9842.45700983705
8192.0 8100.990435575334
EOD
$job1 << EOD
64.0 251.56614666502887
1024.0 853.4389019475065
8192.0 1018.7678708663223
EOD
$job2 << EOD
64.0 18450.45045045045
1024.0 19412.322274881517
8192.0 16713.83712960454
EOD
$job3 << EOD
64.0 243.2520711464798
1024.0 1109.0033759486923
8192.0 1308.4580032269214
EOD
$ppexplicit1 << EOD
4.0 9.470607820650365
64.0 92.57229385375115
1024.0 199.10013640741158
8192.0 219.9165111877693
EOD
$ppexplicit4 << EOD
4.0 27.24382424540726
64.0 149.75002056503578
1024.0 197.028902994021
EOD
$ppexplicit16 << EOD
4.0 48.9893553402703
64.0 167.4350395938801
EOD
$ppexplicit64 << EOD
4.0 63.53305684975463
64.0 175.73665780309736
EOD
$ppimplicit1 << EOD
4.0 9.087198054771665
64.0 126.8170348468195
1024.0 524.9641538301332
8192.0 666.9554371215056
EOD
$ppimplicit4 << EOD
4.0 19.693633225313242
64.0 230.12690408803928
1024.0 590.9361418189031
EOD
$ppimplicit16 << EOD
4.0 29.785300052720565
64.0 305.17132592787476
EOD
$ppimplicit64 << EOD
4.0 34.08065032803458
64.0 342.9049811636668
EOD
$sc0 << EOD
1 408.336
2 755.64
4 717.12
8 642.1080000000001
16 644.755
32 675.4175
64 500.8505
EOD
$sc1 << EOD
4 80.056
16 80.936
64 210.776
256 221.696
512 248.992
1024 225.64
2048 234.968
EOD
$sc2 << EOD
4 13.024
16 13.088000000000001
64 13.032
256 13.136
512 13.728
1024 13.424000000000001
2048 13.52
EOD

set termoption noenhanced
set multiplot layout 2,3 title "dmapingpong bench: Xilinx Versal Virtual development board, 2 CPUs, Linux 6.18.15, job engine dma, profile full, commit 85d30787ce0f, 53 s" font ",11"
set grid
set key top left font ",8"
set style fill solid 0.6
set title "Fence round trip, two processes (us, lower is better)"
set style data histogram
set style histogram clustered gap 1
set ylabel "us"
set xtics rotate by -25 font ",8"
plot $rt using 2:xtic(1) title "median", '' using 3 title "p99"
unset style
set xtics norotate font ",9"
set style data linespoints
set logscale x 2
set xlabel "buffer size (KiB)"
set ylabel "MB/s"
set title "CPU fill + verify (MB/s, higher is better)"
plot $cpu0 using 1:2 with linespoints title "anonymous", $cpu1 using 1:2 with linespoints title "dmapingpong", $cpu2 using 1:2 with linespoints title "system heap", $cpu3 using 1:2 with linespoints title "CMA heap"
set title "Device jobs vs user space (MB/s; engine dma)"
set logscale y 10
plot $job0 using 1:2 with linespoints title "memcpy", $job1 using 1:2 with linespoints title "copy job", $job2 using 1:2 with linespoints title "memset", $job3 using 1:2 with linespoints title "fill job"
unset logscale y
set title "Ping-pong, MB/s verified by ping (per mode and buffer count)"
plot $ppexplicit1 using 1:2 with linespoints dt 1 title "explicit x1", $ppexplicit4 using 1:2 with linespoints dt 1 title "explicit x4", $ppexplicit16 using 1:2 with linespoints dt 1 title "explicit x16", $ppexplicit64 using 1:2 with linespoints dt 1 title "explicit x64", $ppimplicit1 using 1:2 with linespoints dt 2 title "implicit x1", $ppimplicit4 using 1:2 with linespoints dt 2 title "implicit x4", $ppimplicit16 using 1:2 with linespoints dt 2 title "implicit x16", $ppimplicit64 using 1:2 with linespoints dt 2 title "implicit x64"
set title "Scale: cost per operation (us, flat is good)"
set xlabel "pairs / live buffers"
set ylabel "us"
plot $sc0 using 1:2 with linespoints title "pairs: us per round trip", $sc1 using 1:2 with linespoints title "live buffers: us per ALLOC", $sc2 using 1:2 with linespoints title "live buffers: us per fence"
unset multiplot
