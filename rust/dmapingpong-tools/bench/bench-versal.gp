$rt << EOD
"eventfd" 88.66 191.5
"sw_sync" 104.4 234.4
"explicit poll" 115.0 239.1
"explicit wait" 113.9 244.6
"implicit" 125.0 247.3
EOD
$cpu0 << EOD
4.0 1497.0760233918127
64.0 1615.141955835962
1024.0 1012.201525962994
8192.0 992.0105655422173
EOD
$cpu1 << EOD
4.0 210.18062397372742
64.0 1154.4532130777902
1024.0 1524.4830072809323
8192.0 1001.0434536885084
EOD
$cpu2 << EOD
4.0 218.80341880341882
64.0 1173.1347558356006
1024.0 1524.7667574044344
8192.0 1512.8718242454584
EOD
$cpu3 << EOD
4.0 219.1780821917808
64.0 1141.5830546265329
1024.0 1566.0298457531333
8192.0 1523.4730051723136
EOD
$job0 << EOD
64.0 10063.882063882065
1024.0 10139.398158892242
8192.0 9240.020443770818
EOD
$job1 << EOD
64.0 261.18284712258884
1024.0 914.196437289885
8192.0 1097.1352041350158
EOD
$job2 << EOD
64.0 16995.85062240664
1024.0 19042.859218364087
8192.0 17530.61156251045
EOD
$job3 << EOD
64.0 257.82897428634374
1024.0 1182.9602888086642
8192.0 1355.9073058516383
EOD
$ppexplicit1 << EOD
4.0 11.015016565552257
64.0 101.39241289683767
1024.0 206.2258584746096
8192.0 227.2274367699073
EOD
$ppexplicit4 << EOD
4.0 28.280261813361317
64.0 158.6505408101016
1024.0 202.3714633879912
EOD
$ppexplicit16 << EOD
4.0 50.875983579577564
64.0 185.14667992586902
EOD
$ppexplicit64 << EOD
4.0 67.82130675232638
64.0 183.1485503930291
EOD
$ppimplicit1 << EOD
4.0 9.681384135388107
64.0 133.63348667253922
1024.0 538.2634728079865
8192.0 689.0543258764025
EOD
$ppimplicit4 << EOD
4.0 21.14413735429852
64.0 248.3346090594236
1024.0 603.144984739841
EOD
$ppimplicit16 << EOD
4.0 31.267891631106053
64.0 318.6231373216326
EOD
$ppimplicit64 << EOD
4.0 35.47852373481622
64.0 310.21893923167136
EOD
$sc0 << EOD
1 391.624
2 722.1600000000001
4 673.8720000000001
8 605.568
16 629.09
32 645.7270000000001
64 505.88024999999993
EOD
$sc1 << EOD
4 187.51999999999998
16 210.0
64 208.552
256 218.096
512 235.856
1024 217.424
2048 230.288
EOD
$sc2 << EOD
4 12.704
16 13.024
64 13.352
256 13.632
512 13.664
1024 13.776
2048 14.0
EOD

set termoption noenhanced
set multiplot layout 2,3 title "dmapingpong bench: Xilinx Versal Virtual development board, 2 CPUs, Linux 6.18.15, job engine dma, profile full, commit 2f95b89e1952, 50 s" font ",11"
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
